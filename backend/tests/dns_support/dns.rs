//! A small authoritative DNS server on 127.0.0.1 (UDP and TCP, random
//! port) serving zone-file text. Real DNS on a real socket: the resolver
//! under test is not mocked.
//!
//! Semantics that the checks depend on (checks.md §0.2): NXDOMAIN vs NODATA
//! (with the SOA in the authority section, for negative TTLs), empty
//! non-terminals, CNAME chains, one-level `*` wildcards, TC + TCP retry for
//! large answers. Reserved names produce the failure classes:
//! `*.servfail.test` → SERVFAIL, `*.refused.test` → REFUSED,
//! `*.timeout.test` → no answer at all.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

#[derive(Default)]
struct Data {
    /// Owner name (lower case, no trailing dot) → records.
    records: HashMap<String, Vec<Record>>,
    /// Names that exist only as ancestors of owner names (RFC 8020).
    ents: HashSet<String>,
    /// Zone apex → SOA record.
    apexes: HashMap<String, Record>,
    /// Suffixes answered with a failure instead of data.
    failures: Vec<(String, Failure)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    ServFail,
    Refused,
    Timeout,
}

pub struct TestDns {
    pub addr: SocketAddr,
    data: Arc<RwLock<Data>>,
    queries: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for TestDns {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn key(name: &Name) -> String {
    let s = name.to_ascii().to_ascii_lowercase();
    s.trim_end_matches('.').to_string()
}

/// Wrap a zone body with `$ORIGIN`, `$TTL` and an SOA (negative TTL 60 s).
pub fn zone(origin: &str, body: &str) -> String {
    format!(
        "$ORIGIN {origin}.\n$TTL 300\n@ IN SOA ns1.{origin}. hostmaster.{origin}. 1 3600 600 86400 60\n{body}\n"
    )
}

impl TestDns {
    pub async fn start(zones: &[String]) -> TestDns {
        // Same port for UDP and TCP so one SocketAddr serves both transports;
        // retry when the TCP side of a random UDP port is taken.
        let mut bound = None;
        for _ in 0..20 {
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
            let addr = udp.local_addr().expect("udp addr");
            if let Ok(tcp) = TcpListener::bind(addr).await {
                bound = Some((udp, tcp, addr));
                break;
            }
        }
        let (udp, tcp, addr) = bound.expect("no port free for both UDP and TCP");
        let data = Arc::new(RwLock::new(Data::default()));
        let server = TestDns {
            addr,
            data: data.clone(),
            queries: Arc::new(AtomicU64::new(0)),
            tasks: Vec::new(),
        };
        for (suffix, f) in [
            ("servfail.test", Failure::ServFail),
            ("refused.test", Failure::Refused),
            ("timeout.test", Failure::Timeout),
        ] {
            server.fail(suffix, f);
        }
        for z in zones {
            server.load(z);
        }
        let mut server = server;
        let udp = Arc::new(udp);
        {
            let data = data.clone();
            let queries = server.queries.clone();
            let udp = udp.clone();
            server.tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                        continue;
                    };
                    queries.fetch_add(1, Ordering::Relaxed);
                    let Some(resp) = respond(&data, &buf[..n], true) else {
                        continue;
                    };
                    let _ = udp.send_to(&resp, peer).await;
                }
            }));
        }
        {
            let data = data.clone();
            let queries = server.queries.clone();
            server.tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((mut stream, _)) = tcp.accept().await else {
                        continue;
                    };
                    let data = data.clone();
                    let queries = queries.clone();
                    tokio::spawn(async move {
                        loop {
                            let mut len = [0u8; 2];
                            if stream.read_exact(&mut len).await.is_err() {
                                return;
                            }
                            let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
                            if stream.read_exact(&mut msg).await.is_err() {
                                return;
                            }
                            queries.fetch_add(1, Ordering::Relaxed);
                            let Some(resp) = respond(&data, &msg, false) else {
                                continue;
                            };
                            let mut out = (resp.len() as u16).to_be_bytes().to_vec();
                            out.extend_from_slice(&resp);
                            if stream.write_all(&out).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }));
        }
        server
    }

    /// Add (or extend) zone data; usable while the server runs, e.g. to
    /// list an IP between two checks.
    pub fn load(&self, zone_text: &str) {
        let (_origin, sets) = Parser::new(zone_text.to_string(), None, None)
            .parse()
            .unwrap_or_else(|e| panic!("zone does not parse: {e}\n{zone_text}"));
        let mut d = self.data.write().expect("zone lock");
        for (_k, set) in sets {
            for r in set.records_without_rrsigs() {
                let owner = key(&r.name);
                if r.record_type() == RecordType::SOA {
                    d.apexes.insert(owner.clone(), r.clone());
                }
                d.records.entry(owner.clone()).or_default().push(r.clone());
                let labels: Vec<&str> = owner.split('.').collect();
                for i in 1..labels.len() {
                    d.ents.insert(labels[i..].join("."));
                }
            }
        }
    }

    /// Answer every name at or under `suffix` with `failure`.
    pub fn fail(&self, suffix: &str, failure: Failure) {
        let mut d = self.data.write().expect("zone lock");
        d.failures
            .push((suffix.trim_end_matches('.').to_ascii_lowercase(), failure));
    }

    /// Remove every record at `owner` (all types).
    pub fn remove(&self, owner: &str) {
        let mut d = self.data.write().expect("zone lock");
        d.records
            .remove(&owner.trim_end_matches('.').to_ascii_lowercase());
    }

    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

/// A UDP socket on loopback that reads queries and never answers.
pub struct Blackhole {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Blackhole {
    pub async fn start() -> Blackhole {
        let udp = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind blackhole");
        let addr = udp.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while udp.recv_from(&mut buf).await.is_ok() {}
        });
        Blackhole { addr, task }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn respond(data: &RwLock<Data>, query: &[u8], udp: bool) -> Option<Vec<u8>> {
    let req = Message::from_vec(query).ok()?;
    let q = req.queries.first()?.clone();
    let qname = key(q.name());
    let qtype = q.query_type();
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.message_type = MessageType::Response;
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.add_query(q.clone());
    let d = data.read().ok()?;
    let under = |zone: &str| qname == zone || qname.ends_with(&format!(".{zone}"));
    if let Some((_, f)) = d.failures.iter().find(|(z, _)| under(z)) {
        match f {
            Failure::Timeout => return None,
            Failure::ServFail => resp.metadata.response_code = ResponseCode::ServFail,
            Failure::Refused => resp.metadata.response_code = ResponseCode::Refused,
        }
        return resp.to_vec().ok();
    }
    let apex = d
        .apexes
        .keys()
        .filter(|a| qname == **a || qname.ends_with(&format!(".{a}")))
        .max_by_key(|a| a.len())
        .cloned();
    let Some(apex) = apex else {
        resp.metadata.response_code = ResponseCode::Refused;
        return resp.to_vec().ok();
    };
    resp.metadata.authoritative = true;
    let mut name = qname.clone();
    let mut rcode = ResponseCode::NoError;
    let mut negative = false;
    for _ in 0..8 {
        let (recs, synthesized) = match d.records.get(&name) {
            Some(r) => (Some(r.clone()), false),
            None if d.ents.contains(&name) => (None, false),
            None => (wildcard(&d, &name), true),
        };
        let Some(recs) = recs else {
            if d.ents.contains(&name) {
                negative = true;
            } else {
                rcode = ResponseCode::NXDomain;
                negative = true;
            }
            break;
        };
        let owner = Name::from_ascii(format!("{name}.")).ok()?;
        let fix = |r: &Record| {
            let mut r = r.clone();
            if synthesized {
                r.name = owner.clone();
            }
            r
        };
        let hits: Vec<Record> = recs
            .iter()
            .filter(|r| r.record_type() == qtype)
            .map(fix)
            .collect();
        if !hits.is_empty() {
            resp.add_answers(hits);
            break;
        }
        if qtype != RecordType::CNAME
            && let Some(c) = recs.iter().find(|r| r.record_type() == RecordType::CNAME)
        {
            let target = match &c.data {
                RData::CNAME(t) => key(&t.0),
                _ => break,
            };
            resp.add_answer(fix(c));
            name = target;
            continue;
        }
        negative = true;
        break;
    }
    if negative && let Some(soa) = d.apexes.get(&apex) {
        resp.add_authority(soa.clone());
    }
    resp.metadata.response_code = rcode;
    let bytes = resp.to_vec().ok()?;
    let limit = req
        .edns
        .as_ref()
        .map(|e| e.max_payload().max(512) as usize)
        .unwrap_or(512);
    if udp && bytes.len() > limit {
        let mut tc = Message::response(req.metadata.id, req.metadata.op_code);
        tc.metadata.truncation = true;
        tc.metadata.authoritative = true;
        tc.add_query(q);
        return tc.to_vec().ok();
    }
    Some(bytes)
}

/// Wildcard lookup (RFC 4592, simplified): `*.<closest encloser>`.
fn wildcard(d: &Data, name: &str) -> Option<Vec<Record>> {
    let labels: Vec<&str> = name.split('.').collect();
    for i in 1..labels.len() {
        let ancestor = labels[i..].join(".");
        if let Some(r) = d.records.get(&format!("*.{ancestor}")) {
            return Some(r.clone());
        }
        if d.records.contains_key(&ancestor) || d.ents.contains(&ancestor) {
            return None;
        }
    }
    None
}
