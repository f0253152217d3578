//! Lanyard's configuration: built-in defaults, then a TOML file, then `LANYARD_*` variables.
//!
//! Every key is validated by hand so that a mistake is a one-line error naming the key
//! (`invalid configuration: log_format: expected "pretty" or "json", got "xml"`), never a panic.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on (`LANYARD_LISTEN`, comma separated).
    pub listen: Vec<SocketAddr>,
    /// What devices and people are told to connect to; derived from hostname and port if unset.
    pub public_url: Option<String>,
    pub hostname: String,
    pub data_dir: PathBuf,
    /// Certificates the operator brings (`tls.pem` + `tls.key`, `push.p12`, ...): see certs/README.md.
    pub certs_dir: PathBuf,
    pub database_url: String,
    /// Connections to PostgreSQL (`LANYARD_POSTGRES_POOL`); SQLite does not use it.
    pub postgres_pool: u32,
    pub log_format: LogFormat,
    /// Terminate TLS ourselves (false when a reverse proxy does it).
    pub tls: bool,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_proxy: bool,
    /// The first admin's password; generated and printed once when unset.
    pub admin_password: Option<String>,
    /// Name shown in enrolment profiles and on the console.
    pub organization: String,
    /// APNs base URL (production Apple by default; a local mock in tests).
    pub apns_url: String,
    /// Extra CA certificate that the APNs endpoint's TLS certificate chains to (tests).
    pub apns_ca_file: Option<PathBuf>,
    /// Apple School Manager's device service (Apple's by default; a local mock in tests).
    pub ade_url: String,
    /// Extra CA certificate that the ADE endpoint's TLS certificate chains to (tests).
    pub ade_ca_file: Option<PathBuf>,
    /// How often each Apple School Manager token is synced (`ade_sync_interval`, e.g. `30m`).
    pub ade_sync_interval: std::time::Duration,
    /// The root (or roots, PEM) a device's MachineInfo signature must chain to at ADE enrolment:
    /// Apple's root certificate, downloaded from apple.com/certificateauthority. Unset: ADE
    /// enrolment answers 503 saying so.
    pub ade_device_ca_file: Option<PathBuf>,
    /// How long a device waits in Setup Assistant for its profiles before Lanyard sends
    /// DeviceConfigured anyway (`ade_setup_timeout`, default `15m`).
    pub ade_setup_timeout: std::time::Duration,
    /// The file this configuration was read from, if any.
    pub source_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

fn err(key: &str, msg: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("{key}: {msg}"))
}

/// Each key: its TOML name and its environment variable.
const KEYS: &[(&str, &str)] = &[
    ("listen", "LANYARD_LISTEN"),
    ("public_url", "LANYARD_PUBLIC_URL"),
    ("hostname", "LANYARD_HOSTNAME"),
    ("data_dir", "LANYARD_DATA_DIR"),
    ("certs_dir", "LANYARD_CERTS_DIR"),
    ("database_url", "LANYARD_DATABASE_URL"),
    ("postgres_pool", "LANYARD_POSTGRES_POOL"),
    ("log_format", "LANYARD_LOG_FORMAT"),
    ("tls", "LANYARD_TLS"),
    ("trust_proxy", "LANYARD_TRUST_PROXY"),
    ("admin_password", "LANYARD_ADMIN_PASSWORD"),
    ("organization", "LANYARD_ORGANIZATION"),
    ("apns_url", "LANYARD_APNS_URL"),
    ("apns_ca_file", "LANYARD_APNS_CA_FILE"),
    ("ade_url", "LANYARD_ADE_URL"),
    ("ade_ca_file", "LANYARD_ADE_CA_FILE"),
    ("ade_sync_interval", "LANYARD_ADE_SYNC_INTERVAL"),
    ("ade_device_ca_file", "LANYARD_ADE_DEVICE_CA_FILE"),
    ("ade_setup_timeout", "LANYARD_ADE_SETUP_TIMEOUT"),
];

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8443";
/// The most `postgres_pool` takes: five times PostgreSQL's default `max_connections`, so a
/// larger figure is a typo rather than a setting.
const MAX_POSTGRES_POOL: u32 = 500;
pub const APNS_PRODUCTION: &str = "https://api.push.apple.com";
/// Apple School Manager's device service (`apple::ade::ADE_PRODUCTION_URL`, which config may not name).
pub const ADE_PRODUCTION: &str = "https://mdmenrollment.apple.com";

impl Config {
    /// Defaults only: what `lanyard serve` uses in an empty directory.
    pub fn defaults() -> Config {
        Config {
            listen: vec![DEFAULT_LISTEN.parse().expect("constant address")],
            public_url: None,
            hostname: machine_hostname(),
            data_dir: PathBuf::from("data"),
            certs_dir: PathBuf::from("certs"),
            database_url: String::new(),
            postgres_pool: default_postgres_pool(),
            log_format: LogFormat::Pretty,
            tls: true,
            trust_proxy: false,
            admin_password: None,
            organization: "Lanyard".into(),
            apns_url: APNS_PRODUCTION.into(),
            apns_ca_file: None,
            ade_url: ADE_PRODUCTION.into(),
            ade_ca_file: None,
            ade_sync_interval: std::time::Duration::from_secs(30 * 60),
            ade_device_ca_file: None,
            ade_setup_timeout: std::time::Duration::from_secs(15 * 60),
            source_file: None,
        }
    }

    /// Load from `--config` (or `LANYARD_CONFIG`, or `./lanyard.toml` if present) and the
    /// process environment.
    pub fn load(explicit_file: Option<&Path>) -> Result<Config, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().filter(|(k, _)| k.starts_with("LANYARD_")).collect();
        Self::from_sources(explicit_file, &env)
    }

    /// Load from a file and an explicit environment map (tests pass their own).
    pub fn from_sources(explicit_file: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let mut cfg = Config::defaults();
        let file = match explicit_file {
            Some(p) => Some(p.to_path_buf()),
            None => match env.get("LANYARD_CONFIG") {
                Some(p) => Some(PathBuf::from(p)),
                None => Some(PathBuf::from("lanyard.toml")).filter(|p| p.exists()),
            },
        };
        if let Some(path) = &file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
            let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                ConfigError(format!("{}: {}", path.display(), e.message().lines().next().unwrap_or("not valid TOML")))
            })?;
            for (key, value) in table {
                if !KEYS.iter().any(|(k, _)| *k == key) {
                    return Err(err(&key, "unknown key"));
                }
                let text = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Array(items) if key == "listen" => items
                        .iter()
                        .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| err(&key, "expected strings like \"0.0.0.0:8443\"")))
                        .collect::<Result<Vec<_>, _>>()?
                        .join(","),
                    other => return Err(err(&key, format!("unexpected {}", other.type_str()))),
                };
                cfg.set(&key, &text)?;
            }
            cfg.source_file = Some(path.clone());
        }
        for (key, var) in KEYS {
            if let Some(value) = env.get(*var) {
                cfg.set(key, value).map_err(|e| ConfigError(format!("{var} ({})", e.0)))?;
            }
        }
        if cfg.database_url.is_empty() {
            cfg.database_url = format!("sqlite://{}", cfg.data_dir.join("lanyard.db").display());
        }
        Ok(cfg)
    }

    /// Set one key from its text form, validating it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match key {
            "listen" => {
                let addrs = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse::<SocketAddr>().map_err(|_| err(key, format!("expected host:port like 0.0.0.0:8443, got {s:?}"))))
                    .collect::<Result<Vec<_>, _>>()?;
                if addrs.is_empty() {
                    return Err(err(key, "at least one address is needed"));
                }
                self.listen = addrs;
            }
            "public_url" => {
                let v = value.trim_end_matches('/');
                if !(v.starts_with("https://") || v.starts_with("http://")) {
                    return Err(err(key, format!("expected an http(s):// URL, got {value:?}")));
                }
                self.public_url = Some(v.to_owned());
            }
            "hostname" => {
                if value.is_empty() || value.contains(['/', ' ', ':']) {
                    return Err(err(key, format!("not a host name: {value:?}")));
                }
                self.hostname = value.to_owned();
            }
            "data_dir" => {
                if value.is_empty() {
                    return Err(err(key, "must not be empty"));
                }
                self.data_dir = PathBuf::from(value);
            }
            "certs_dir" => {
                if value.is_empty() {
                    return Err(err(key, "must not be empty"));
                }
                let path = PathBuf::from(value);
                if path.exists() && !path.is_dir() {
                    return Err(err(key, format!("{value:?} is not a directory")));
                }
                self.certs_dir = path;
            }
            "database_url" => {
                if !(value.starts_with("sqlite:") || value.starts_with("postgres://") || value.starts_with("postgresql://")) {
                    return Err(err(key, "expected sqlite://PATH or postgres://..."));
                }
                self.database_url = value.to_owned();
            }
            "postgres_pool" => {
                self.postgres_pool =
                    value.parse().ok().filter(|n| (1..=MAX_POSTGRES_POOL).contains(n)).ok_or_else(|| {
                        err(key, format!("expected a number of connections from 1 to {MAX_POSTGRES_POOL}, got {value:?}"))
                    })?;
            }
            "log_format" => {
                self.log_format = match value {
                    "pretty" => LogFormat::Pretty,
                    "json" => LogFormat::Json,
                    other => {
                        return Err(err(key, format!("expected \"pretty\" or \"json\", got {other:?}")));
                    }
                }
            }
            "tls" => self.tls = parse_bool(key, value)?,
            "trust_proxy" => self.trust_proxy = parse_bool(key, value)?,
            "admin_password" => {
                if value.len() < 12 {
                    return Err(err(key, "must be at least 12 characters"));
                }
                self.admin_password = Some(value.to_owned());
            }
            "organization" => self.organization = value.to_owned(),
            "apns_url" => {
                if !value.starts_with("https://") {
                    return Err(err(key, format!("expected an https:// URL, got {value:?}")));
                }
                self.apns_url = value.trim_end_matches('/').to_owned();
            }
            "apns_ca_file" => self.apns_ca_file = Some(PathBuf::from(value)),
            "ade_url" => {
                // http:// only for a local mock: Apple's service is https.
                if !(value.starts_with("https://") || value.starts_with("http://127.0.0.1") || value.starts_with("http://localhost")) {
                    return Err(err(key, format!("expected an https:// URL, got {value:?}")));
                }
                self.ade_url = value.trim_end_matches('/').to_owned();
            }
            "ade_ca_file" => self.ade_ca_file = Some(PathBuf::from(value)),
            "ade_sync_interval" => self.ade_sync_interval = parse_interval(key, value)?,
            "ade_device_ca_file" => self.ade_device_ca_file = Some(PathBuf::from(value)),
            "ade_setup_timeout" => self.ade_setup_timeout = parse_interval(key, value)?,
            other => return Err(err(other, "unknown key")),
        }
        Ok(())
    }

    /// The URL devices and people are told, given the port actually bound.
    pub fn effective_public_url(&self, bound: Option<SocketAddr>) -> String {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        let scheme = if self.tls { "https" } else { "http" };
        let port = bound.or(self.listen.first().copied()).map(|a| a.port()).unwrap_or(8443);
        format!("{scheme}://{}:{port}", self.hostname)
    }

    pub fn is_postgres(&self) -> bool {
        self.database_url.starts_with("postgres")
    }
}

/// `90s`, `30m`, `2h` (a bare number is minutes); from one minute to a day.
fn parse_interval(key: &str, value: &str) -> Result<std::time::Duration, ConfigError> {
    let v = value.trim();
    let (number, unit) = match v.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&v[..i], &v[i..]),
        None => (v, "m"),
    };
    let n: u64 = number.parse().map_err(|_| err(key, format!("expected a time like 30m, 2h or 90s, got {value:?}")))?;
    let secs = match unit.trim() {
        "s" => n,
        "m" | "min" => n * 60,
        "h" => n * 3600,
        _ => return Err(err(key, format!("expected a time like 30m, 2h or 90s, got {value:?}"))),
    };
    if !(60..=86_400).contains(&secs) {
        return Err(err(key, format!("must be from 1 minute to 24 hours, got {value:?}")));
    }
    Ok(std::time::Duration::from_secs(secs))
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        other => Err(err(key, format!("expected true or false, got {other:?}"))),
    }
}

/// Twice this machine's cores, at least 4. A device request's statements are short, so a
/// connection is busy only while PostgreSQL works on it, and more connections than
/// PostgreSQL has cores to run them only have its backends contend with one another: with
/// PostgreSQL on the same 2 cores, 16 connections cost it about 40% more CPU per request
/// than 4, and 2,000 commands/s became 1,700 (BENCHMARKS.md, round 4).
fn default_postgres_pool() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    u32::try_from(cores * 2).unwrap_or(u32::MAX).clamp(4, MAX_POSTGRES_POOL)
}

/// The machine's host name, or `localhost` when it cannot be read.
pub fn machine_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        if let Ok(name) = std::str::from_utf8(&buf[..end]) {
            if !name.is_empty() {
                return name.to_owned();
            }
        }
    }
    "localhost".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_use_sqlite_in_data_dir() {
        let c = Config::from_sources(None, &env(&[("LANYARD_DATA_DIR", "/tmp/x")])).unwrap();
        assert_eq!(c.database_url, "sqlite:///tmp/x/lanyard.db");
        assert!(c.tls);
    }

    #[test]
    fn env_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("l.toml");
        std::fs::write(&f, "log_format = \"json\"\ntls = false\nlisten = [\"127.0.0.1:9000\"]\n").unwrap();
        let c = Config::from_sources(Some(&f), &env(&[("LANYARD_TLS", "true")])).unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(c.tls);
        assert_eq!(c.listen[0].port(), 9000);
    }

    #[test]
    fn bad_values_name_the_key_on_one_line() {
        let e = Config::from_sources(None, &env(&[("LANYARD_LOG_FORMAT", "xml")])).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("log_format") && msg.contains("LANYARD_LOG_FORMAT"), "{msg}");
        assert!(!msg.contains('\n'));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("l.toml");
        std::fs::write(&f, "colour = \"blue\"\n").unwrap();
        let msg = Config::from_sources(Some(&f), &env(&[])).unwrap_err().to_string();
        assert!(msg.contains("colour: unknown key"), "{msg}");
        std::fs::write(&f, "tls = \"maybe\"\n").unwrap();
        let msg = Config::from_sources(Some(&f), &env(&[])).unwrap_err().to_string();
        assert!(msg.contains("tls: expected true or false"), "{msg}");
        std::fs::write(&f, "tls = [").unwrap();
        let msg = Config::from_sources(Some(&f), &env(&[])).unwrap_err().to_string();
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn certs_dir_defaults_to_certs_and_takes_a_directory() {
        assert_eq!(Config::from_sources(None, &env(&[])).unwrap().certs_dir, PathBuf::from("certs"));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("l.toml");
        std::fs::write(&f, format!("certs_dir = {:?}\n", dir.path().display().to_string())).unwrap();
        assert_eq!(Config::from_sources(Some(&f), &env(&[])).unwrap().certs_dir, dir.path());
        let c = Config::from_sources(Some(&f), &env(&[("LANYARD_CERTS_DIR", "/etc/lanyard/certs")])).unwrap();
        assert_eq!(c.certs_dir, PathBuf::from("/etc/lanyard/certs"), "the environment overrides the file");
        let msg = Config::from_sources(None, &env(&[("LANYARD_CERTS_DIR", "")])).unwrap_err().to_string();
        assert!(msg.contains("LANYARD_CERTS_DIR (certs_dir: must not be empty)"), "{msg}");
        let msg = Config::from_sources(None, &env(&[("LANYARD_CERTS_DIR", f.to_str().unwrap())])).unwrap_err().to_string();
        assert!(msg.contains("certs_dir:") && msg.contains("is not a directory") && !msg.contains('\n'), "{msg}");
    }

    #[test]
    fn postgres_pool_defaults_to_the_cores_and_takes_a_number() {
        let cores = std::thread::available_parallelism().unwrap().get() as u32;
        let c = Config::from_sources(None, &env(&[])).unwrap();
        assert_eq!(c.postgres_pool, (2 * cores).max(4));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("l.toml");
        std::fs::write(&f, "postgres_pool = 12\n").unwrap();
        assert_eq!(Config::from_sources(Some(&f), &env(&[])).unwrap().postgres_pool, 12);
        let c = Config::from_sources(Some(&f), &env(&[("LANYARD_POSTGRES_POOL", "6")])).unwrap();
        assert_eq!(c.postgres_pool, 6, "the environment overrides the file");
        for bad in ["0", "-3", "lots", "501"] {
            let msg = Config::from_sources(None, &env(&[("LANYARD_POSTGRES_POOL", bad)])).unwrap_err().to_string();
            assert!(msg.contains("LANYARD_POSTGRES_POOL (postgres_pool: expected a number of connections from 1 to 500"), "{msg}");
        }
    }
}
