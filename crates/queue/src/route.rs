//! Where mail for a domain goes: a static route, the smarthost, or the domain's MX hosts
//! (RFC 5321 §5.1: MX by preference, the domain's own address when it has no MX, and
//! RFC 7505's null MX meaning "this domain takes no mail").

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;

use crate::deliver::{Credentials, Hop, Outcome, TlsPolicy};

/// A DNS resolver: the configured name servers, or the system's.
pub type Resolver = TokioResolver;

/// Builds the resolver: `servers` if given (tests point it at a loopback DNS server), else
/// `/etc/resolv.conf`.
pub fn resolver(servers: &[SocketAddr]) -> Result<Resolver, String> {
    let (config, mut opts) = if servers.is_empty() {
        hickory_resolver::system_conf::read_system_conf().map_err(|e| e.to_string())?
    } else {
        let servers = servers
            .iter()
            .map(|ns| {
                let mut server = NameServerConfig::udp_and_tcp(ns.ip());
                for conn in &mut server.connections {
                    conn.port = ns.port();
                }
                server
            })
            .collect();
        let mut opts = ResolverOpts::default();
        opts.use_hosts_file = ResolveHosts::Never;
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 1;
        (ResolverConfig::from_name_servers(servers), opts)
    };
    opts.cache_size = 1024;
    // DNS over TLS is not used; an empty root store keeps hickory from requiring system CAs.
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts)
        .with_tls_config(tls)
        .build()
        .map_err(|e| e.to_string())
}

/// Where one domain's mail goes, and how.
#[derive(Debug, Clone)]
pub struct Route {
    pub hops: Vec<Hop>,
    pub tls: TlsPolicy,
    pub credentials: Option<Credentials>,
}

/// Routing rules plus the resolver.
pub struct Router {
    /// None: DNS is off; only static routes and the smarthost work.
    resolver: Option<Resolver>,
    /// domain -> `host:port`.
    routes: BTreeMap<String, String>,
    smarthost: Option<(String, Option<Credentials>)>,
    require_tls: Vec<String>,
    mx_port: u16,
}

impl Router {
    pub fn new(
        resolver: Option<Resolver>,
        routes: BTreeMap<String, String>,
        smarthost: Option<(String, Option<Credentials>)>,
        require_tls: Vec<String>,
        mx_port: u16,
    ) -> Router {
        Router {
            resolver,
            routes: routes
                .into_iter()
                .map(|(d, t)| (d.to_lowercase(), t))
                .collect(),
            smarthost,
            require_tls: require_tls.into_iter().map(|d| d.to_lowercase()).collect(),
            mx_port,
        }
    }

    /// The route for `domain`; an error is the outcome for all its recipients.
    pub async fn route(&self, domain: &str) -> Result<Route, Outcome> {
        let domain = domain.trim_end_matches('.').to_lowercase();
        let tls = if self.require_tls.contains(&domain) {
            TlsPolicy::Require
        } else {
            TlsPolicy::Opportunistic
        };
        if let Some(target) = self.routes.get(&domain) {
            return Ok(Route {
                hops: vec![self.host_port(target).await?],
                tls,
                credentials: None,
            });
        }
        if let Some((target, credentials)) = &self.smarthost {
            return Ok(Route {
                hops: vec![self.host_port(target).await?],
                tls,
                credentials: credentials.clone(),
            });
        }
        Ok(Route {
            hops: self.mx_hops(&domain).await?,
            tls,
            credentials: None,
        })
    }

    /// `host:port` (or `[v6]:port`) to a hop.
    async fn host_port(&self, target: &str) -> Result<Hop, Outcome> {
        if let Ok(addr) = target.parse::<SocketAddr>() {
            return Ok(Hop {
                name: addr.ip().to_string(),
                addrs: vec![addr],
            });
        }
        let (host, port) = target
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .ok_or_else(|| Outcome::temporary("4.3.5", format!("bad route target {target:?}")))?;
        let addrs = self.addresses(host, port).await?;
        Ok(Hop {
            name: host.to_string(),
            addrs,
        })
    }

    async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Outcome> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let Some(resolver) = &self.resolver else {
            return Err(offline(host));
        };
        match resolver.lookup_ip(host).await {
            Ok(found) => Ok(found.iter().map(|ip| SocketAddr::new(ip, port)).collect()),
            Err(e) => Err(dns_failure(host, &e)),
        }
    }

    /// The MX hosts of `domain` by preference, each with its addresses.
    async fn mx_hops(&self, domain: &str) -> Result<Vec<Hop>, Outcome> {
        let Some(resolver) = &self.resolver else {
            return Err(offline(domain));
        };
        let names = match resolver.mx_lookup(domain).await {
            Ok(lookup) => {
                let mut mx: Vec<(u16, String, bool)> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some((
                            mx.preference,
                            mx.exchange.to_ascii().trim_end_matches('.').to_string(),
                            mx.exchange.is_root(),
                        )),
                        _ => None,
                    })
                    .collect();
                if mx.len() == 1 && mx[0].2 {
                    return Err(Outcome::permanent(
                        "5.1.10",
                        format!("{domain} does not accept mail (null MX, RFC 7505)"),
                    ));
                }
                mx.retain(|m| !m.2);
                mx.sort_by_key(|m| m.0);
                mx.into_iter().map(|m| m.1).collect::<Vec<_>>()
            }
            Err(e) if is_no_data(&e) => Vec::new(),
            Err(e) => return Err(dns_failure(domain, &e)),
        };
        if names.is_empty() {
            // No MX: the domain itself is the implicit MX (RFC 5321 §5.1).
            let addrs = self.addresses(domain, self.mx_port).await?;
            return Ok(vec![Hop {
                name: domain.to_string(),
                addrs,
            }]);
        }
        let mut hops = Vec::new();
        let mut last_error = None;
        for name in names {
            match self.addresses(&name, self.mx_port).await {
                Ok(addrs) if !addrs.is_empty() => hops.push(Hop { name, addrs }),
                Ok(_) => {}
                Err(e) => last_error = Some(e),
            }
        }
        if hops.is_empty() {
            return Err(last_error.unwrap_or_else(|| {
                Outcome::temporary("4.4.4", format!("no address for any MX host of {domain}"))
            }));
        }
        Ok(hops)
    }
}

fn offline(name: &str) -> Outcome {
    Outcome::temporary(
        "4.4.3",
        format!("cannot look up {name}: DNS is off (dns.offline) and no route is configured"),
    )
}

/// The name exists but has no records of the type.
fn is_no_data(e: &NetError) -> bool {
    matches!(
        e,
        NetError::Dns(DnsError::NoRecordsFound(NoRecords {
            response_code: ResponseCode::NoError,
            ..
        }))
    )
}

/// NXDOMAIN is permanent (RFC 3463 5.1.2, bad destination system); anything else may pass.
fn dns_failure(name: &str, e: &NetError) -> Outcome {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(NoRecords {
            response_code: ResponseCode::NXDomain,
            ..
        })) => Outcome::permanent("5.1.2", format!("{name}: no such domain (NXDOMAIN)")),
        NetError::Dns(DnsError::NoRecordsFound(_)) => {
            Outcome::permanent("5.1.2", format!("{name}: has no address"))
        }
        other => Outcome::temporary("4.4.3", format!("DNS lookup of {name} failed: {other}")),
    }
}
