//! Password login with throttling per username and per client address.
//!
//! Failures are counted in the database so that every instance behind a load balancer sees
//! them: 10 failures within 15 minutes lock that username (or address) for 15 minutes.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use uuid::Uuid;

use super::jwt::{Claims, SESSION_HOURS};
use super::{Actor, Role, password};
use crate::context::Lanyard;
use crate::error::{Error, Result};

pub const MAX_FAILURES: i64 = 10;
pub const WINDOW_MINUTES: i64 = 15;
pub const LOCKOUT_MINUTES: i64 = 15;

pub struct Session {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub role: Role,
    pub operator_id: Uuid,
}

fn keys(username: &str, ip: Option<&str>) -> Vec<String> {
    let mut k = vec![format!("user:{}", username.to_lowercase())];
    if let Some(ip) = ip {
        k.push(format!("ip:{ip}"));
    }
    k
}

impl Lanyard {
    pub async fn login(&self, username: &str, pw: &str, ip: Option<&str>) -> Result<Session> {
        let now = self.now();
        let keys = keys(username, ip);
        let actor = Actor { name: format!("operator:{username}"), ip: ip.map(str::to_owned) };
        if let Some(until) = self.store.login_locked_until(&keys, now).await? {
            self.audit(&actor, "auth.login_locked", Some(username), json!({"locked_until": until})).await?;
            let secs = (until - now).num_seconds().max(1) as u64;
            return Err(Error::TooManyRequests {
                message: format!(
                    "too many failed logins; try again after {} UTC (in {} minutes)",
                    until.format("%H:%M"),
                    secs.div_ceil(60)
                ),
                retry_after_secs: secs,
            });
        }
        let op = self.store.operator_by_username(username).await?;
        let ok = password::verify(pw.to_owned(), op.as_ref().map(|o| o.password_hash.clone())).await;
        let op = match op {
            Some(op) if ok => op,
            _ => {
                for key in &keys {
                    self.store
                        .record_login_failure(key, now, Duration::minutes(WINDOW_MINUTES), MAX_FAILURES, Duration::minutes(LOCKOUT_MINUTES))
                        .await?;
                }
                self.audit(&actor, "auth.login_failed", Some(username), json!({"reason": "wrong username or password"})).await?;
                return Err(Error::Unauthorized("wrong username or password".into()));
            }
        };
        if op.disabled {
            self.audit(&actor, "auth.login_failed", Some(username), json!({"reason": "account disabled"})).await?;
            return Err(Error::Forbidden("this operator account is disabled; ask an admin".into()));
        }
        self.store.clear_login_failures(&keys[0]).await?;
        self.store.touch_operator_login(op.id, now).await?;
        let expires_at = now + Duration::hours(SESSION_HOURS);
        let token = self.jwt.issue(&Claims {
            sub: op.id.to_string(),
            name: op.username.clone(),
            role: op.role.as_str().to_owned(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            jti: Uuid::new_v4().to_string(),
        });
        self.audit(&actor, "auth.login", Some(username), json!({"role": op.role})).await?;
        Ok(Session { token, expires_at, role: op.role, operator_id: op.id })
    }
}
