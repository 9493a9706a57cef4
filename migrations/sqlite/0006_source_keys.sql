-- What a webhook source verifies its provider's requests with: the HMAC signing key
-- (Mailgun, Mandrill) or Basic/bearer credentials (SparkPost, Brevo) in `secret`, the
-- provider's public key (SendGrid ECDSA, Postal RSA, a pinned SNS certificate) in
-- `public_key`, and the webhook URL exactly as Mandrill signs it. The secret cannot be
-- stored hashed: verifying an HMAC needs the key itself. It is never shown again.
ALTER TABLE sources ADD COLUMN secret TEXT;
ALTER TABLE sources ADD COLUMN public_key TEXT;
ALTER TABLE sources ADD COLUMN webhook_url TEXT;
