//! The web-filtering policy a profile carries, and the difference between two of them.
//!
//! Policy 7.3.1 asks that every change to filtering is logged and risk-assessed. A profile is
//! an opaque plist to most readers, so this module reduces a filtering profile to what it
//! allows and blocks ([`FilterPolicy`]) and describes a change in plain lines
//! ([`FilterDiff::lines`]) that the audit log and the approver can read: `added denylist:
//! tiktok.com`, `filter mode: auto_filter -> allow_list`.

use std::collections::BTreeSet;

use plist::{Dictionary, Value};
use serde::{Deserialize, Serialize};

/// Apple's web content filter (built-in allow/deny lists, or a vendor's filter plug-in).
pub const WEB_CONTENT_FILTER: &str = "com.apple.webcontent-filter";
/// A global HTTP proxy, as used to route traffic through the school's filter.
pub const GLOBAL_PROXY: &str = "com.apple.proxy.http.global";
/// Encrypted DNS settings, as used by DNS-based filters.
pub const DNS_SETTINGS: &str = "com.apple.dnsSettings.managed";
/// A DNS proxy network extension, as used by DNS-based filters.
pub const DNS_PROXY: &str = "com.apple.dnsProxy.managed";

/// The payload types that make a profile a *filtering profile*.
pub const FILTER_PAYLOAD_TYPES: &[&str] = &[WEB_CONTENT_FILTER, GLOBAL_PROXY, DNS_SETTINGS, DNS_PROXY];

/// What a filtering profile allows and blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FilterPolicy {
    /// How filtering works, as `+`-joined names in alphabetical order: `allow_list` (only
    /// listed sites), `auto_filter` (Apple's adult-content filter), `deny_list` (a built-in
    /// filter with only a block list), `plugin` (a vendor's filter app), `proxy`, `dns`.
    pub mode: String,
    /// Sites always reachable: `AllowListBookmarks`, `WhitelistedBookmarks` and
    /// `PermittedURLs`.
    pub allowed: BTreeSet<String>,
    /// Sites blocked: `DenyListURLs` and `BlacklistedURLs`.
    pub denied: BTreeSet<String>,
    /// The filter plug-in, as `name (bundle id)`.
    pub plugin: Option<String>,
    /// Where the global proxy sends traffic: `host:port`, `PAC <url>`, or `automatic (WPAD)`.
    pub proxy: Option<String>,
    /// The DNS server or DNS proxy app filtering lookups.
    pub dns: Option<String>,
}

impl FilterPolicy {
    /// The policy of a parsed profile, or `None` if it holds no filtering payload.
    ///
    /// Several filtering payloads combine: lists are unioned and modes joined. Keys of the
    /// wrong type are ignored here; structure is `inspect`'s job and key types the schema's.
    pub fn from_profile(profile: &Value) -> Option<FilterPolicy> {
        let payloads = profile.as_dictionary()?.get("PayloadContent")?.as_array()?.iter().filter_map(Value::as_dictionary);
        let mut modes = BTreeSet::new();
        let mut policy =
            FilterPolicy { mode: String::new(), allowed: BTreeSet::new(), denied: BTreeSet::new(), plugin: None, proxy: None, dns: None };
        for payload in payloads {
            match payload.get("PayloadType").and_then(Value::as_string) {
                Some(WEB_CONTENT_FILTER) => policy.add_web_filter(payload, &mut modes),
                Some(GLOBAL_PROXY) => {
                    modes.insert("proxy");
                    append(&mut policy.proxy, proxy_target(payload));
                }
                Some(DNS_SETTINGS) => {
                    modes.insert("dns");
                    append(&mut policy.dns, dns_server(payload));
                }
                Some(DNS_PROXY) => {
                    modes.insert("dns");
                    let app = string(payload, "AppBundleIdentifier").unwrap_or("unnamed app");
                    append(&mut policy.dns, format!("DNS proxy app {app}"));
                }
                _ => {}
            }
        }
        if modes.is_empty() {
            return None;
        }
        policy.mode = modes.into_iter().collect::<Vec<_>>().join("+");
        Some(policy)
    }

    fn add_web_filter(&mut self, payload: &Dictionary, modes: &mut BTreeSet<&'static str>) {
        if string(payload, "FilterType") == Some("Plugin") {
            modes.insert("plugin");
            let bundle = string(payload, "PluginBundleID").unwrap_or("no bundle id");
            let plugin = match string(payload, "UserDefinedName") {
                Some(name) => format!("{name} ({bundle})"),
                None => bundle.to_owned(),
            };
            append(&mut self.plugin, plugin);
            return;
        }
        let bookmarks = ["AllowListBookmarks", "WhitelistedBookmarks"];
        let allow_list = bookmarks.iter().any(|k| payload.contains_key(k));
        let auto = payload.get("AutoFilterEnabled").and_then(Value::as_boolean) == Some(true);
        if allow_list {
            modes.insert("allow_list");
        }
        if auto {
            modes.insert("auto_filter");
        }
        if !allow_list && !auto {
            modes.insert("deny_list");
        }
        for key in bookmarks {
            let urls = array(payload, key).filter_map(Value::as_dictionary).filter_map(|b| string(b, "URL"));
            self.allowed.extend(urls.map(str::to_owned));
        }
        self.allowed.extend(strings(payload, "PermittedURLs"));
        self.denied.extend(strings(payload, "DenyListURLs"));
        self.denied.extend(strings(payload, "BlacklistedURLs"));
    }
}

/// Where a global proxy payload sends traffic.
fn proxy_target(payload: &Dictionary) -> String {
    if string(payload, "ProxyType") == Some("Auto") {
        return match string(payload, "ProxyPACURL") {
            Some(url) => format!("PAC {url}"),
            None => "automatic (WPAD)".to_owned(),
        };
    }
    let server = string(payload, "ProxyServer").unwrap_or("no server");
    match payload.get("ProxyServerPort").and_then(Value::as_signed_integer) {
        Some(port) => format!("{server}:{port}"),
        None => server.to_owned(),
    }
}

/// The server an encrypted-DNS payload uses: `HTTPS <url>` or `TLS <name>`, with addresses.
fn dns_server(payload: &Dictionary) -> String {
    let Some(settings) = payload.get("DNSSettings").and_then(Value::as_dictionary) else {
        return "no DNS settings".to_owned();
    };
    let protocol = string(settings, "DNSProtocol").unwrap_or("DNS");
    let server = string(settings, "ServerURL").or_else(|| string(settings, "ServerName"));
    let addresses: Vec<&str> = array(settings, "ServerAddresses").filter_map(Value::as_string).collect();
    match (server, addresses.is_empty()) {
        (Some(s), true) => format!("{protocol} {s}"),
        (Some(s), false) => format!("{protocol} {s} ({})", addresses.join(", ")),
        (None, _) => format!("{protocol} {}", addresses.join(", ")),
    }
}

fn string<'a>(dict: &'a Dictionary, key: &str) -> Option<&'a str> {
    dict.get(key).and_then(Value::as_string)
}

fn array<'a>(dict: &'a Dictionary, key: &str) -> impl Iterator<Item = &'a Value> {
    dict.get(key).and_then(Value::as_array).into_iter().flatten()
}

fn strings<'a>(dict: &'a Dictionary, key: &'a str) -> impl Iterator<Item = String> + 'a {
    array(dict, key).filter_map(Value::as_string).map(str::to_owned)
}

/// Adds `item` to a `; `-separated description.
fn append(field: &mut Option<String>, item: String) {
    match field {
        Some(existing) => {
            existing.push_str("; ");
            existing.push_str(&item);
        }
        None => *field = Some(item),
    }
}

/// What changed between two filtering policies. `None` on either side is "no filtering".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterDiff {
    /// `(before, after)` when the mode changed; `none` stands for no filtering.
    pub mode_changed: Option<(String, String)>,
    pub added_allowed: Vec<String>,
    pub removed_allowed: Vec<String>,
    pub added_denied: Vec<String>,
    pub removed_denied: Vec<String>,
    /// `(before, after)` when the filter plug-in changed.
    pub plugin_changed: Option<(Option<String>, Option<String>)>,
    /// `(before, after)` when the proxy changed.
    pub proxy_changed: Option<(Option<String>, Option<String>)>,
    /// `(before, after)` when the DNS filter changed.
    pub dns_changed: Option<(Option<String>, Option<String>)>,
}

/// Compares two policies; either may be absent (a profile that does not filter).
pub fn diff(before: Option<&FilterPolicy>, after: Option<&FilterPolicy>) -> FilterDiff {
    let mode = |p: Option<&FilterPolicy>| p.map_or_else(|| "none".to_owned(), |p| p.mode.clone());
    let (added_allowed, removed_allowed) = changes(before.map(|p| &p.allowed), after.map(|p| &p.allowed));
    let (added_denied, removed_denied) = changes(before.map(|p| &p.denied), after.map(|p| &p.denied));
    let field = |get: fn(&FilterPolicy) -> &Option<String>| {
        let (b, a) = (before.and_then(|p| get(p).clone()), after.and_then(|p| get(p).clone()));
        (b != a).then_some((b, a))
    };
    let (mode_before, mode_after) = (mode(before), mode(after));
    FilterDiff {
        mode_changed: (mode_before != mode_after).then_some((mode_before, mode_after)),
        added_allowed,
        removed_allowed,
        added_denied,
        removed_denied,
        plugin_changed: field(|p| &p.plugin),
        proxy_changed: field(|p| &p.proxy),
        dns_changed: field(|p| &p.dns),
    }
}

/// `(added, removed)` going from `before` to `after`; `None` is an empty list.
fn changes(before: Option<&BTreeSet<String>>, after: Option<&BTreeSet<String>>) -> (Vec<String>, Vec<String>) {
    let empty = BTreeSet::new();
    let (before, after) = (before.unwrap_or(&empty), after.unwrap_or(&empty));
    (after.difference(before).cloned().collect(), before.difference(after).cloned().collect())
}

impl FilterDiff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        *self == FilterDiff::default()
    }

    /// One plain line per change, for the audit log and the approver: the mode and services
    /// first, then each site added to or removed from a list.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some((before, after)) = &self.mode_changed {
            lines.push(format!("filter mode: {before} -> {after}"));
        }
        let changes = [("filter plug-in", &self.plugin_changed), ("proxy", &self.proxy_changed), ("dns", &self.dns_changed)];
        for (what, change) in changes {
            if let Some((before, after)) = change {
                let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".to_owned());
                lines.push(format!("{what}: {} -> {}", show(before), show(after)));
            }
        }
        let lists = [
            ("added allowlist", &self.added_allowed),
            ("removed allowlist", &self.removed_allowed),
            ("added denylist", &self.added_denied),
            ("removed denylist", &self.removed_denied),
        ];
        for (what, sites) in lists {
            lines.extend(sites.iter().map(|site| format!("{what}: {site}")));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::profiles::{BASELINE, from_json};

    fn policy_of(xml: &[u8]) -> Option<FilterPolicy> {
        FilterPolicy::from_profile(&Value::from_reader_xml(xml).expect("plist"))
    }

    fn baseline(stem: &str) -> Option<FilterPolicy> {
        let (_, xml) = BASELINE.iter().find(|(s, _)| *s == stem).expect("baseline profile");
        policy_of(xml.as_bytes())
    }

    #[test]
    fn reads_the_baseline_filters() {
        let ks1 = baseline("ks1-web-allowlist").expect("ks1 filters");
        assert_eq!(ks1.mode, "allow_list");
        assert!(ks1.allowed.contains("https://www.kiddle.co/"));
        assert!(ks1.allowed.contains("https://www.bbc.co.uk/bitesize"));
        assert!(ks1.denied.is_empty());

        let ks2 = baseline("ks2-web-filtered").expect("ks2 filters");
        assert_eq!(ks2.mode, "auto_filter");
        assert!(ks2.allowed.contains("https://www.kiddle.co/"));
        for site in ["facebook.com", "tiktok.com", "roblox.com", "proxysite.com"] {
            assert!(ks2.denied.contains(site), "{site}");
        }

        let staff = baseline("staff-web").expect("staff filters");
        assert_eq!(staff.mode, "auto_filter");
        assert!(staff.allowed.is_empty() && staff.denied.is_empty());

        for stem in ["pupil-ipad-restrictions", "passcode-staff", "mac-filevault"] {
            assert_eq!(baseline(stem), None, "{stem}");
        }
    }

    #[test]
    fn reads_plugin_proxy_and_dns_filters() {
        let spec = serde_json::json!({
            "name": "school-filter",
            "display_name": "School filter",
            "payloads": [
                {"type": "com.apple.webcontent-filter", "FilterType": "Plugin",
                 "UserDefinedName": "Smoothwall", "PluginBundleID": "com.smoothwall.app",
                 "FilterBrowsers": true},
                {"type": "com.apple.proxy.http.global", "ProxyType": "Manual",
                 "ProxyServer": "proxy.school.example", "ProxyServerPort": 8080},
                {"type": "com.apple.dnsSettings.managed",
                 "DNSSettings": {"DNSProtocol": "HTTPS",
                                 "ServerURL": "https://dns.school.example/dns-query"}}
            ]
        });
        let p = policy_of(&from_json(&spec).expect("build")).expect("filters");
        assert_eq!(p.mode, "dns+plugin+proxy");
        assert_eq!(p.plugin.as_deref(), Some("Smoothwall (com.smoothwall.app)"));
        assert_eq!(p.proxy.as_deref(), Some("proxy.school.example:8080"));
        assert_eq!(p.dns.as_deref(), Some("HTTPS https://dns.school.example/dns-query"));

        let mut d = Dictionary::new();
        d.insert("ProxyType".into(), "Auto".into());
        assert_eq!(proxy_target(&d), "automatic (WPAD)");
        d.insert("ProxyPACURL".into(), "https://pac.example/p.pac".into());
        assert_eq!(proxy_target(&d), "PAC https://pac.example/p.pac");
    }

    #[test]
    fn a_built_in_filter_with_only_a_deny_list_is_deny_list_mode() {
        let spec = serde_json::json!({
            "name": "deny", "display_name": "Deny",
            "payloads": [{"type": "com.apple.webcontent-filter", "FilterType": "BuiltIn",
                          "DenyListURLs": ["example.com"]}]
        });
        let p = policy_of(&from_json(&spec).expect("build")).expect("filters");
        assert_eq!(p.mode, "deny_list");
        assert_eq!(p.denied, BTreeSet::from(["example.com".to_owned()]));
    }

    #[test]
    fn diff_describes_each_change() {
        let ks1 = baseline("ks1-web-allowlist");
        let ks2 = baseline("ks2-web-filtered");
        let d = diff(ks2.as_ref(), ks1.as_ref());
        assert_eq!(d.mode_changed, Some(("auto_filter".to_owned(), "allow_list".to_owned())));
        let lines = d.lines();
        assert_eq!(lines[0], "filter mode: auto_filter -> allow_list");
        assert!(lines.contains(&"added allowlist: https://www.bbc.co.uk/bitesize".to_owned()));
        assert!(lines.contains(&"removed denylist: tiktok.com".to_owned()));
        // Kiddle is allowed in both, so it is not a change.
        assert!(!lines.iter().any(|l| l.contains("kiddle")), "{lines:?}");

        let mut edited = ks2.clone().expect("ks2");
        edited.denied.insert("example.com".to_owned());
        edited.allowed.remove("https://www.kiddle.co/");
        assert_eq!(diff(ks2.as_ref(), Some(&edited)).lines(), ["removed allowlist: https://www.kiddle.co/", "added denylist: example.com"]);

        assert!(diff(ks2.as_ref(), ks2.as_ref()).is_empty());
        assert!(diff(None, None).lines().is_empty());
        let removed = diff(ks1.as_ref(), None);
        assert_eq!(removed.lines()[0], "filter mode: allow_list -> none");
        assert_eq!(removed.removed_allowed.len(), 4);
    }

    #[test]
    fn diff_reports_services_and_serialises() {
        let before = FilterPolicy {
            mode: "proxy".into(),
            allowed: BTreeSet::new(),
            denied: BTreeSet::new(),
            plugin: None,
            proxy: Some("old.example:8080".into()),
            dns: None,
        };
        let after = FilterPolicy { proxy: Some("new.example:3128".into()), ..before.clone() };
        let d = diff(Some(&before), Some(&after));
        assert_eq!(d.lines(), ["proxy: old.example:8080 -> new.example:3128"]);
        let json = serde_json::to_value(&d).expect("json");
        assert_eq!(json["proxy_changed"], serde_json::json!(["old.example:8080", "new.example:3128"]));
        let back: FilterDiff = serde_json::from_value(json).expect("round trip");
        assert_eq!(back, d);
    }
}
