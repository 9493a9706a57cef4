//! The resolver wrapper every check goes through.
//!
//! Responsibilities (issue: "bounded concurrency, per-query timeouts, results
//! cached within their DNS TTL"):
//! - classify answers into data / NODATA / NXDOMAIN / failure, because every
//!   check must tell them apart (checks.md §0.2);
//! - cap the number of queries in flight with a semaphore;
//! - bound each query by the configured timeout, so a silent server becomes
//!   `DnsFailure::Timeout`, never a hang;
//! - cache positive and negative answers for their TTL (negative TTL from the
//!   SOA, RFC 2308 §5); failures are not cached, so the next run retries.
//!
//! hickory's own cache is switched off: it would hide the TTL we report and
//! make the per-check `ttl_seconds` meaningless.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OnceCell, Semaphore};

use super::CheckError;

/// Negative answers without an SOA carry no TTL; keep them briefly so a
/// burst of checks on one subject does not repeat the query.
const DEFAULT_NEGATIVE_TTL: u32 = 60;
/// Cap on cached entries; past it expired entries are swept and, if that is
/// not enough, the cache starts over. Keeps memory flat on long runs.
const MAX_CACHE_ENTRIES: usize = 200_000;

/// What a successful DNS exchange said.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// NOERROR with records of the queried type. `cname` holds aliases
    /// followed on the way (RFC 2181 §10.3 cares about MX targets that are
    /// aliases).
    Records {
        rdata: Vec<RData>,
        ttl: u32,
        cname: Vec<String>,
    },
    /// NOERROR, no records of that type (name exists).
    NoData { ttl: u32 },
    /// RCODE 3: the name does not exist.
    NxDomain { ttl: u32 },
}

impl Answer {
    pub fn ttl(&self) -> u32 {
        match self {
            Answer::Records { ttl, .. } | Answer::NoData { ttl } | Answer::NxDomain { ttl } => *ttl,
        }
    }

    pub fn rdata(&self) -> &[RData] {
        match self {
            Answer::Records { rdata, .. } => rdata,
            _ => &[],
        }
    }

    /// RFC 7208 §4.6.4: NOERROR with no answers or NXDOMAIN is a "void lookup".
    pub fn is_void(&self) -> bool {
        !matches!(self, Answer::Records { .. })
    }

    pub fn ipv4(&self) -> Vec<Ipv4Addr> {
        self.rdata()
            .iter()
            .filter_map(|r| match r {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect()
    }

    pub fn ipv6(&self) -> Vec<Ipv6Addr> {
        self.rdata()
            .iter()
            .filter_map(|r| match r {
                RData::AAAA(a) => Some(a.0),
                _ => None,
            })
            .collect()
    }

    pub fn ips(&self) -> Vec<IpAddr> {
        self.rdata()
            .iter()
            .filter_map(|r| match r {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect()
    }

    /// TXT strings, each RR's character-strings concatenated without a
    /// separator (RFC 7208 §3.3, RFC 6376 §3.6.2.2); separate RRs stay
    /// separate (checks.md §0.3).
    pub fn txt(&self) -> Vec<String> {
        self.rdata()
            .iter()
            .filter_map(|r| match r {
                RData::TXT(t) => {
                    let mut bytes = Vec::new();
                    for part in t.txt_data.iter() {
                        bytes.extend_from_slice(part);
                    }
                    Some(String::from_utf8_lossy(&bytes).into_owned())
                }
                _ => None,
            })
            .collect()
    }

    pub fn ptr_names(&self) -> Vec<String> {
        self.rdata()
            .iter()
            .filter_map(|r| match r {
                RData::PTR(p) => Some(name_to_string(&p.0)),
                _ => None,
            })
            .collect()
    }

    pub fn mx(&self) -> Vec<(u16, String)> {
        self.rdata()
            .iter()
            .filter_map(|r| match r {
                RData::MX(mx) => Some((mx.preference, name_to_string(&mx.exchange))),
                _ => None,
            })
            .collect()
    }

    pub fn cname_chain(&self) -> &[String] {
        match self {
            Answer::Records { cname, .. } => cname,
            _ => &[],
        }
    }
}

/// A DNS exchange that did not produce an answer (checks.md §0.2: "transient /
/// resolver problem", SPF `temperror`, dashboard `error`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsFailure {
    Timeout,
    ServFail,
    Refused,
    Rcode(String),
    BadName(String),
    Other(String),
}

impl std::fmt::Display for DnsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnsFailure::Timeout => f.write_str("timed out"),
            DnsFailure::ServFail => f.write_str("SERVFAIL"),
            DnsFailure::Refused => f.write_str("REFUSED"),
            DnsFailure::Rcode(c) => write!(f, "error response {c}"),
            DnsFailure::BadName(n) => write!(f, "invalid name {n}"),
            DnsFailure::Other(e) => write!(f, "resolver error: {e}"),
        }
    }
}

pub type DnsResult = Result<Answer, DnsFailure>;

/// Lower-case absolute name and type.
type QueryKey = (String, RecordType);

/// Resolver settings; `CheckConfig` maps onto this.
#[derive(Clone, Debug)]
pub struct DnsSettings {
    pub nameservers: Vec<SocketAddr>,
    pub timeout: Duration,
    pub attempts: usize,
    pub concurrency: usize,
}

struct CacheEntry {
    answer: Answer,
    expires: Instant,
}

/// Cheap to clone; clones share the cache, the semaphore and the counters.
#[derive(Clone)]
pub struct Dns {
    inner: Arc<DnsInner>,
}

struct DnsInner {
    resolver: TokioResolver,
    limit: Semaphore,
    timeout: Duration,
    cache: Mutex<HashMap<QueryKey, CacheEntry>>,
    /// Queries on the wire, so concurrent askers of the same question share
    /// one answer (e.g. a blocklist's test points asked by 1,000 IP checks).
    in_flight: Mutex<HashMap<QueryKey, Arc<OnceCell<DnsResult>>>>,
    queries_sent: AtomicU64,
    cache_hits: AtomicU64,
}

impl Dns {
    pub fn new(settings: &DnsSettings) -> Result<Dns, CheckError> {
        let provider = TokioRuntimeProvider::default();
        let (config, mut opts) = if settings.nameservers.is_empty() {
            hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| CheckError::Resolver(format!("reading system resolver: {e}")))?
        } else {
            let servers = settings
                .nameservers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            // No search list: every query name is absolute (checks.md §0.3).
            (
                ResolverConfig::from_name_servers(servers),
                ResolverOpts::default(),
            )
        };
        opts.cache_size = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ndots = 0;
        opts.timeout = settings.timeout;
        opts.attempts = settings.attempts.max(1);
        // DNSBL answers live in 127.0.0.0/8; they must not be filtered.
        opts.allow_answers.clear();
        opts.deny_answers.clear();
        let mut builder = TokioResolver::builder_with_config(config, provider);
        *builder.options_mut() = opts;
        let resolver = builder
            .build()
            .map_err(|e| CheckError::Resolver(e.to_string()))?;
        Ok(Dns {
            inner: Arc::new(DnsInner {
                resolver,
                limit: Semaphore::new(settings.concurrency.max(1)),
                // hickory retries internally; this is the outer bound for one
                // logical query across all attempts and both transports.
                timeout: settings.timeout * (settings.attempts.max(1) as u32 * 2)
                    + Duration::from_millis(200),
                cache: Mutex::new(HashMap::new()),
                in_flight: Mutex::new(HashMap::new()),
                queries_sent: AtomicU64::new(0),
                cache_hits: AtomicU64::new(0),
            }),
        })
    }

    /// Queries sent to the network so far (cache hits excluded).
    pub fn queries_sent(&self) -> u64 {
        self.inner.queries_sent.load(Ordering::Relaxed)
    }

    pub fn cache_hits(&self) -> u64 {
        self.inner.cache_hits.load(Ordering::Relaxed)
    }

    pub fn cache_len(&self) -> usize {
        self.inner.cache.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Look up `name` (absolute or not; a trailing dot is added) for `rtype`.
    pub async fn query(&self, name: &str, rtype: RecordType) -> DnsResult {
        let fqdn = absolute(name);
        let key = (fqdn.to_ascii_lowercase(), rtype);
        if let Some(hit) = self.cached(&key) {
            self.inner.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit);
        }
        let parsed = Name::from_ascii(&fqdn).map_err(|_| DnsFailure::BadName(fqdn.clone()))?;
        let cell = match self.inner.in_flight.lock() {
            Ok(mut m) => m.entry(key.clone()).or_default().clone(),
            Err(_) => Arc::new(OnceCell::new()),
        };
        let result = cell
            .get_or_init(|| async {
                let answer = self.network_query(parsed, rtype).await;
                if let Ok(a) = &answer {
                    self.store(key.clone(), a);
                }
                answer
            })
            .await
            .clone();
        if let Ok(mut m) = self.inner.in_flight.lock()
            && m.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell))
        {
            m.remove(&key);
        }
        result
    }

    async fn network_query(&self, name: Name, rtype: RecordType) -> DnsResult {
        let _permit = self
            .inner
            .limit
            .acquire()
            .await
            .map_err(|_| DnsFailure::Other("resolver shut down".into()))?;
        self.inner.queries_sent.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(self.inner.timeout, self.inner.resolver.lookup(name, rtype))
            .await
        {
            Err(_) => Err(DnsFailure::Timeout),
            Ok(result) => classify(result, rtype),
        }
    }

    pub async fn a(&self, name: &str) -> DnsResult {
        self.query(name, RecordType::A).await
    }
    pub async fn aaaa(&self, name: &str) -> DnsResult {
        self.query(name, RecordType::AAAA).await
    }
    pub async fn txt(&self, name: &str) -> DnsResult {
        self.query(name, RecordType::TXT).await
    }
    pub async fn mx(&self, name: &str) -> DnsResult {
        self.query(name, RecordType::MX).await
    }
    pub async fn ptr(&self, name: &str) -> DnsResult {
        self.query(name, RecordType::PTR).await
    }

    /// A for IPv4 clients, AAAA for IPv6 (RFC 7208 §5.3, RFC 8601 §3).
    pub async fn addr_for(&self, name: &str, family_of: IpAddr) -> DnsResult {
        match family_of {
            IpAddr::V4(_) => self.a(name).await,
            IpAddr::V6(_) => self.aaaa(name).await,
        }
    }

    fn cached(&self, key: &(String, RecordType)) -> Option<Answer> {
        let cache = self.inner.cache.lock().ok()?;
        let entry = cache.get(key)?;
        let now = Instant::now();
        if entry.expires <= now {
            return None;
        }
        // Report the remaining TTL, as a caching resolver would.
        let left = (entry.expires - now).as_secs() as u32;
        Some(with_ttl(entry.answer.clone(), left))
    }

    fn store(&self, key: (String, RecordType), answer: &Answer) {
        let ttl = answer.ttl();
        if ttl == 0 {
            return;
        }
        let Ok(mut cache) = self.inner.cache.lock() else {
            return;
        };
        let now = Instant::now();
        if cache.len() >= MAX_CACHE_ENTRIES {
            cache.retain(|_, e| e.expires > now);
            if cache.len() >= MAX_CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(
            key,
            CacheEntry {
                answer: answer.clone(),
                expires: now + Duration::from_secs(u64::from(ttl)),
            },
        );
    }
}

fn with_ttl(answer: Answer, ttl: u32) -> Answer {
    match answer {
        Answer::Records { rdata, cname, .. } => Answer::Records { rdata, ttl, cname },
        Answer::NoData { .. } => Answer::NoData { ttl },
        Answer::NxDomain { .. } => Answer::NxDomain { ttl },
    }
}

fn classify(
    result: Result<hickory_resolver::lookup::Lookup, NetError>,
    rtype: RecordType,
) -> DnsResult {
    match result {
        Ok(lookup) => {
            let mut rdata = Vec::new();
            let mut cname = Vec::new();
            let mut ttl = u32::MAX;
            for record in lookup.answers() {
                let rt = record.record_type();
                if rt == rtype {
                    ttl = ttl.min(record.ttl);
                    rdata.push(record.data.clone());
                } else if rt == RecordType::CNAME {
                    if let RData::CNAME(c) = &record.data {
                        cname.push(name_to_string(&c.0));
                    }
                    ttl = ttl.min(record.ttl);
                }
            }
            if rdata.is_empty() {
                // A CNAME chain that ends nowhere is NODATA for our purposes.
                return Ok(Answer::NoData {
                    ttl: if ttl == u32::MAX {
                        DEFAULT_NEGATIVE_TTL
                    } else {
                        ttl
                    },
                });
            }
            Ok(Answer::Records { rdata, ttl, cname })
        }
        Err(NetError::Dns(DnsError::NoRecordsFound(no))) => {
            let ttl = no.negative_ttl.unwrap_or(DEFAULT_NEGATIVE_TTL);
            if no.response_code == ResponseCode::NXDomain {
                Ok(Answer::NxDomain { ttl })
            } else {
                Ok(Answer::NoData { ttl })
            }
        }
        Err(NetError::Dns(DnsError::ResponseCode(code))) => Err(match code {
            ResponseCode::ServFail => DnsFailure::ServFail,
            ResponseCode::Refused => DnsFailure::Refused,
            other => DnsFailure::Rcode(other.to_string()),
        }),
        Err(NetError::Timeout) => Err(DnsFailure::Timeout),
        Err(e) => {
            let text = e.to_string();
            if text.contains("timed out") || text.contains("timeout") {
                Err(DnsFailure::Timeout)
            } else {
                Err(DnsFailure::Other(text))
            }
        }
    }
}

/// Lower-case, no trailing dot: how names appear in records and details.
pub fn name_to_string(name: &Name) -> String {
    let s = name.to_ascii().to_ascii_lowercase();
    s.strip_suffix('.').map(str::to_string).unwrap_or(s)
}

/// Absolute form with a trailing dot, so no search list applies (§0.3).
pub fn absolute(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}
