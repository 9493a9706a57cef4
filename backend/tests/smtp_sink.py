#!/usr/bin/env python3
"""A real SMTP server on loopback for the report email tests (aiosmtpd).

    smtp_sink.py PORT DIR [--refuse ADDRESS]...

Writes every accepted message to DIR as N.eml (the bytes received) and N.json (the
envelope, plus the message as Python's own MIME parser reads it, so the Rust test
asserts on an independent parse). RCPT TO a --refuse address is answered with
"550 5.7.1 <ADDRESS>: Recipient address rejected: report refused by test relay".
Prints "ready" on stdout once it listens; stops on SIGTERM or when stdin closes.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import signal
import sys

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory, refuse):
        self.directory = directory
        self.refuse = {a.lower() for a in refuse}
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.refuse:
            return f"550 5.7.1 <{address}>: Recipient address rejected: report refused by test relay"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        n = self.count
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            parts.append(
                {
                    "content_type": part.get_content_type(),
                    "charset": part.get_content_charset(),
                    # CRLF is SMTP's line end, not the text's: compare as the
                    # reader sees it.
                    "content": part.get_content().replace("\r\n", "\n"),
                }
            )
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "helo": session.host_name,
            "headers": {k: str(v) for k, v in msg.items()},
            "content_type": msg.get_content_type(),
            "parts": parts,
            "defects": [str(d) for d in msg.defects],
        }
        # The .json is written last and renamed into place: a reader that sees it
        # sees a complete message.
        with open(os.path.join(self.directory, f"{n}.eml"), "wb") as f:
            f.write(raw)
        tmp = os.path.join(self.directory, f".{n}.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.directory, f"{n}.json"))
        return f"250 2.0.0 Ok: queued as SINK{n}"


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("dir")
    p.add_argument("--refuse", action="append", default=[])
    args = p.parse_args()
    controller = Controller(
        Sink(args.dir, args.refuse), hostname="127.0.0.1", port=args.port
    )
    controller.start()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # The test holds our stdin: if it dies without stopping us, EOF ends the sink.
    loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.read(1) or stop.set())
    await stop.wait()
    controller.stop()


if __name__ == "__main__":
    asyncio.run(main())
