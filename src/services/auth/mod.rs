//! Who is asking, and what their role lets them do.
//!
//! Operators log in with a password and get a one-hour session token (a JWT, see
//! [`session_token`]); scripts use long-lived API tokens. Both arrive as `Authorization: Bearer`
//! and become a [`Principal`]. Roles are fixed; the permission table below is the single place
//! that says which role may do what.

pub mod password;
pub mod principal;
pub mod session_token;
pub mod tokens;

pub use principal::{Actor, Principal};

pub use crate::store::operators::Role;

/// The permission table: the single place that says which role may do what.
impl Role {
    pub fn allows(self, p: Permission) -> bool {
        use Permission::*;
        use Role::*;
        match self {
            Admin => true,
            Technician => matches!(p, ReadDevices | ManageDevices | ReadProfiles | ManageProfiles | ReadRegister | WriteRegister),
            Dsl | Headteacher => {
                matches!(
                    p,
                    ReadDevices
                        | ReadProfiles
                        | ReadRegister
                        | WriteSignatures
                        | ReadAudit
                        | Safeguarding
                        | ApproveSecondPerson
                        | ReadFilteringHistory
                ) || (self == Dsl && p == RevealSecrets)
            }
            Auditor => matches!(p, ReadDevices | ReadProfiles | ReadRegister | ReadAudit | ReadFilteringHistory),
        }
    }
}

/// Things a role may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ManageOperators,
    ManageApiTokens,
    ManagePushCert,
    /// Apple School Manager server tokens (uploading one reads every school device's record).
    ManageAde,
    ReadAudit,
    ReadDevices,
    /// Enrolment tokens, commands, groups.
    ManageDevices,
    ReadProfiles,
    ManageProfiles,
    ReadRegister,
    /// People, grants, assignments.
    WriteRegister,
    WriteSignatures,
    /// Cases and quarantine.
    Safeguarding,
    /// The second signature on releases, disposals and filtering changes.
    ApproveSecondPerson,
    ReadFilteringHistory,
    /// FileVault keys and lock PINs, with a justification.
    RevealSecrets,
}

impl Permission {
    /// Plain words for the 403 message.
    pub fn describe(self) -> &'static str {
        use Permission::*;
        match self {
            ManageOperators => "manage operators",
            ManageApiTokens => "manage API tokens",
            ManagePushCert => "manage the push certificate",
            ManageAde => "manage Apple School Manager tokens",
            ReadAudit => "read the audit log",
            ReadDevices => "read devices",
            ManageDevices => "manage devices",
            ReadProfiles => "read profiles",
            ManageProfiles => "manage profiles",
            ReadRegister => "read the register",
            WriteRegister => "change the register",
            WriteSignatures => "record AUP signatures",
            Safeguarding => "work on safeguarding cases",
            ApproveSecondPerson => "approve as the second person",
            ReadFilteringHistory => "read the filtering history",
            RevealSecrets => "reveal device secrets",
        }
    }
}

/// Constant-time comparison for secrets.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a, b)
}

/// The OpenAPI schema of a role.
pub mod schema {
    use crate::schema::{hand_schema, string_enum};

    hand_schema!(
        /// An operator's role.
        Role => string_enum(&crate::services::auth::Role::ALL.map(crate::services::auth::Role::as_str), None)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_privilege() {
        assert!(Role::Admin.allows(Permission::Safeguarding));
        assert!(!Role::Technician.allows(Permission::Safeguarding));
        assert!(!Role::Technician.allows(Permission::ReadAudit));
        assert!(Role::Dsl.allows(Permission::Safeguarding));
        assert!(!Role::Dsl.allows(Permission::ManageDevices));
        assert!(Role::Headteacher.allows(Permission::ApproveSecondPerson));
        assert!(!Role::Headteacher.allows(Permission::RevealSecrets));
        assert!(Role::Auditor.allows(Permission::ReadAudit));
        for p in [Permission::ManageDevices, Permission::WriteRegister, Permission::Safeguarding, Permission::ManageOperators] {
            assert!(!Role::Auditor.allows(p), "auditor must be read-only: {p:?}");
        }
    }
}
