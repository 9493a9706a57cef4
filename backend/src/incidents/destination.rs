//! Destination: where mail goes, grouped by mail provider so that every domain one
//! provider hosts forms one destination (DESIGN.md, "Words").

use crate::smtp::{provider_from_domain, provider_from_mx};

/// The provider key behind the MX host, else behind the recipient domain, else the
/// recipient domain itself.
pub fn destination(mx_host: Option<&str>, recipient_domain: &str) -> String {
    mx_host
        .and_then(provider_from_mx)
        .or_else(|| provider_from_domain(recipient_domain))
        .map(|p| p.key.to_string())
        .unwrap_or_else(|| recipient_domain.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::destination;

    #[test]
    fn groups_by_provider_then_falls_back_to_the_domain() {
        let cases = [
            (Some("aspmx.l.google.com"), "example.org", "google"),
            (Some("alt1.aspmx.l.google.com."), "gmail.com", "google"),
            (None, "gmail.com", "google"),
            (
                Some("example-com.mail.protection.outlook.com"),
                "example.com",
                "microsoft",
            ),
            (Some("mta7.am0.yahoodns.net"), "yahoo.com", "yahoo"),
            (Some("mx.example.net"), "Example.NET", "example.net"),
            (None, "example.org", "example.org"),
        ];
        for (mx, domain, want) in cases {
            assert_eq!(destination(mx, domain), want, "{mx:?} {domain}");
        }
    }
}
