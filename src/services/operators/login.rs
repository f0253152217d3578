//! Password login with throttling per username and per client address, and logging out.
//!
//! Attempts are counted in the database so that every instance behind a load balancer sees
//! them: 10 failures within 15 minutes lock that username (or address) for 15 minutes. Each
//! attempt is counted *before* its password is checked, in one atomic step with the check that
//! there is room for it, so that however many requests arrive at once no more than
//! [`MAX_FAILURES`] wrong passwords are ever checked for one username or one address in a
//! window. An attempt that turns out to be the right password gives its place back (and a
//! success clears the username's count).

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::services::auth::session_token::{Claims, SESSION_HOURS};
use crate::services::auth::{Actor, Principal, Role, password};
use crate::services::operators::Operators;
use crate::store::LoginAttempt;

pub const MAX_FAILURES: i64 = 10;
pub const WINDOW_MINUTES: i64 = 15;
pub const LOCKOUT_MINUTES: i64 = 15;
/// How soon to try again when the count is full only because attempts are still being checked.
const BUSY_RETRY_SECS: u64 = 10;

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

impl Operators {
    pub async fn login(&self, username: &str, pw: &str, ip: Option<&str>) -> Result<Session> {
        let now = self.clock.now();
        let keys = keys(username, ip);
        let actor = Actor { name: format!("operator:{username}"), ip: ip.map(str::to_owned) };
        // Count the attempt on every key before the password is looked at.
        let mut admitted: Vec<&str> = Vec::with_capacity(keys.len());
        for key in &keys {
            match self.store.admit_login_attempt(key, now, Duration::minutes(WINDOW_MINUTES), MAX_FAILURES).await {
                Ok(LoginAttempt::Admitted) => admitted.push(key),
                Ok(refused) => {
                    // Not checked: it must not count against the keys that did admit it.
                    self.refund_login_attempts(&admitted, now).await;
                    return Err(self.login_refused(&actor, username, refused, now).await?);
                }
                Err(e) => {
                    self.refund_login_attempts(&admitted, now).await;
                    return Err(e.into());
                }
            }
        }
        let op = self.store.operator_by_username(username).await?;
        let ok = password::verify(pw.to_owned(), op.as_ref().map(|o| o.password_hash.clone())).await;
        let op = match op {
            Some(op) if ok => op,
            _ => {
                for key in &keys {
                    self.store.lock_after_failure(key, now, MAX_FAILURES, Duration::minutes(LOCKOUT_MINUTES)).await?;
                }
                self.audit.audit(&actor, "auth.login_failed", Some(username), json!({"reason": "wrong username or password"})).await?;
                return Err(Error::Unauthorized("wrong username or password".into()));
            }
        };
        if op.disabled {
            // The right password: not a failure.
            self.refund_login_attempts(&admitted, now).await;
            self.audit.audit(&actor, "auth.login_failed", Some(username), json!({"reason": "account disabled"})).await?;
            return Err(Error::Forbidden("this operator account is disabled; ask an admin".into()));
        }
        self.store.clear_login_failures(&keys[0]).await?;
        self.refund_login_attempts(&admitted[1..], now).await;
        self.store.touch_operator_login(op.id, now).await?;
        let expires_at = now + Duration::hours(SESSION_HOURS);
        let token = self.session_key.issue(&Claims {
            sub: op.id.to_string(),
            name: op.username.clone(),
            role: op.role.as_str().to_owned(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            jti: Uuid::new_v4().to_string(),
            epoch: op.session_epoch,
        });
        self.audit.audit(&actor, "auth.login", Some(username), json!({"role": op.role})).await?;
        Ok(Session { token, expires_at, role: op.role, operator_id: op.id })
    }

    /// Give back the places of attempts that were not wrong passwords. A failure here only
    /// leaves an attempt counted (as if it had failed), so it is logged, not returned.
    async fn refund_login_attempts(&self, keys: &[&str], admitted_at: DateTime<Utc>) {
        for key in keys {
            if let Err(e) = self.store.refund_login_attempt(key, admitted_at).await {
                tracing::warn!(error = %e, key, "giving back a login attempt's place");
            }
        }
    }

    /// The 429 for an attempt refused before its password was checked (audited).
    async fn login_refused(&self, actor: &Actor, username: &str, refused: LoginAttempt, now: DateTime<Utc>) -> Result<Error> {
        if let LoginAttempt::Locked { until } = refused {
            self.audit.audit(actor, "auth.login_locked", Some(username), json!({"locked_until": until})).await?;
            let secs = (until - now).num_seconds().max(1) as u64;
            return Ok(Error::TooManyRequests {
                message: format!(
                    "too many failed logins; try again after {} UTC (in {} minutes)",
                    until.format("%H:%M"),
                    secs.div_ceil(60)
                ),
                retry_after_secs: secs,
            });
        }
        // Full: every allowed attempt is counted, some perhaps still being checked; a lockout
        // follows if they are wrong, room if they are right, and the count starts again when
        // the window ends in any case. (`Admitted` is no refusal and is never passed here.)
        let window_ends = match refused {
            LoginAttempt::Full { window_ends } => window_ends,
            _ => now,
        };
        self.audit
            .audit(
                actor,
                "auth.login_locked",
                Some(username),
                json!({"locked_until": null, "reason": "the attempts allowed are already counted or being checked"}),
            )
            .await?;
        let secs = ((window_ends - now).num_seconds().max(1) as u64).min(BUSY_RETRY_SECS);
        Ok(Error::TooManyRequests {
            message: format!(
                "too many failed logins; {MAX_FAILURES} attempts for this username or address are already counted or being \
                 checked, try again in {secs} seconds"
            ),
            retry_after_secs: secs,
        })
    }

    /// End the caller's own session (logging out), audited in the same transaction. An API
    /// token has no session: it is revoked with `DELETE /api/v1/api-tokens/{id}`.
    pub async fn logout(&self, p: &Principal, via: &str) -> Result<()> {
        let (Some(id), Some(session), crate::services::auth::principal::Credential::Operator { username, .. }) =
            (p.operator_id(), p.session.as_ref(), &p.credential)
        else {
            return Err(Error::BadRequest(
                "an API token has no session to log out of; an admin revokes it with DELETE /api/v1/api-tokens/{id}".into(),
            ));
        };
        let entry = self.audit.audit_entry(&p.actor(), "auth.logout", Some(username), json!({"via": via}));
        // False only when a second logout of the same session won the race: it is ended either way.
        self.store.revoke_session(&session.jti, id, session.expires_at, self.clock.now(), entry).await?;
        Ok(())
    }
}
