//! The school baseline: the profiles in `profiles/` that every new Lanyard starts with.
//!
//! The files are the source of truth, kept as XML a technician can open in Apple Configurator.
//! [`BASELINE`] embeds them so the binary works from any directory; [`load_baseline`] reads a
//! directory instead, for a school that has edited its copies.

use std::collections::HashMap;
use std::path::Path;

use super::{ProfileError, inspect};

/// The baseline profiles as `(stem, XML)`, embedded from `profiles/<stem>.mobileconfig`.
pub const BASELINE: &[(&str, &str)] = &[
    ("ks1-web-allowlist", include_str!("../../../profiles/ks1-web-allowlist.mobileconfig")),
    ("ks2-web-filtered", include_str!("../../../profiles/ks2-web-filtered.mobileconfig")),
    ("mac-filevault", include_str!("../../../profiles/mac-filevault.mobileconfig")),
    ("passcode-pupil", include_str!("../../../profiles/passcode-pupil.mobileconfig")),
    ("passcode-staff", include_str!("../../../profiles/passcode-staff.mobileconfig")),
    ("pupil-camera-off", include_str!("../../../profiles/pupil-camera-off.mobileconfig")),
    ("pupil-ipad-restrictions", include_str!("../../../profiles/pupil-ipad-restrictions.mobileconfig")),
    ("staff-web", include_str!("../../../profiles/staff-web.mobileconfig")),
];

/// Reads every `*.mobileconfig` in `dir`, sorted by file name, as `(stem, bytes)`.
///
/// Each file is inspected, and two files with one `PayloadIdentifier` are refused (a device
/// would let the second replace the first), so a mistake in an edited file stops the load with
/// the file's name rather than reaching devices. The bytes are returned as read, so the
/// technician's file is what gets stored.
pub fn load_baseline(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, ProfileError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| ProfileError::Io { path, error }
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.extension().is_some_and(|e| e == "mobileconfig") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();

    let mut identifiers: HashMap<String, String> = HashMap::new();
    let mut profiles = Vec::with_capacity(paths.len());
    for path in paths {
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let in_file = |error| ProfileError::InFile { path: path.clone(), error: Box::new(error) };
        let identifier = inspect(&bytes).map_err(in_file)?.identifier;
        if let Some(other) = identifiers.insert(identifier.clone(), stem.clone()) {
            return Err(in_file(ProfileError::Duplicate {
                at: "profile".into(),
                key: "PayloadIdentifier",
                value: identifier,
                other: format!("{other}.mobileconfig"),
            }));
        }
        profiles.push((stem, bytes));
    }
    Ok(profiles)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::services::profiles::testutil::{profiles_dir, validate};

    const STEMS: [&str; 8] = [
        "ks1-web-allowlist",
        "ks2-web-filtered",
        "mac-filevault",
        "passcode-pupil",
        "passcode-staff",
        "pupil-camera-off",
        "pupil-ipad-restrictions",
        "staff-web",
    ];

    /// The platforms each baseline profile is meant for, to check with `--os`.
    fn platforms(stem: &str) -> &'static [&'static str] {
        match stem {
            "mac-filevault" => &["macOS"],
            "passcode-staff" => &["iOS", "macOS"],
            _ => &["iOS"],
        }
    }

    #[test]
    fn every_file_in_profiles_passes_apples_schema() {
        let dir = profiles_dir();
        let mut stems = BTreeSet::new();
        for entry in std::fs::read_dir(&dir).expect("read profiles/") {
            let path = entry.expect("entry").path();
            let stem = path.file_stem().expect("stem").to_string_lossy().into_owned();
            assert_eq!(path.extension().and_then(|e| e.to_str()), Some("mobileconfig"), "{} is not a .mobileconfig", path.display());
            let bytes = std::fs::read(&path).expect("read");
            if let Err(out) = validate(&bytes, None) {
                panic!("{} fails validate_plist.py:\n{out}", path.display());
            }
            for os in platforms(&stem) {
                match validate(&bytes, Some(os)) {
                    Ok(out) => assert!(!out.contains("warning"), "{} has warnings for {os}:\n{out}", path.display()),
                    Err(out) => panic!("{} fails for {os}:\n{out}", path.display()),
                }
            }
            stems.insert(stem);
        }
        assert_eq!(stems, BTreeSet::from(STEMS.map(str::to_owned)));
    }

    #[test]
    fn embedded_baseline_matches_the_files() {
        let dir = profiles_dir();
        let loaded = load_baseline(&dir).expect("load");
        let embedded: Vec<(String, Vec<u8>)> = BASELINE.iter().map(|(stem, xml)| ((*stem).to_owned(), xml.as_bytes().to_vec())).collect();
        assert_eq!(loaded, embedded);
    }

    #[test]
    fn baseline_profiles_are_self_explanatory_and_stable() {
        for (stem, xml) in BASELINE {
            let p = inspect(xml.as_bytes()).expect("inspect");
            assert_eq!(p.identifier, format!("uk.sch.lanyard.baseline.{stem}"));
            assert!(p.display_name.is_some_and(|n| !n.is_empty()), "{stem}");
            assert!(p.description.is_some_and(|d| d.len() > 40), "{stem}");
            assert!(p.warnings.is_empty(), "{stem}: {:?}", p.warnings);
            for payload in &p.payloads {
                assert!(payload.identifier.starts_with(&p.identifier), "{stem}: {}", payload.identifier);
                assert!(payload.display_name.is_some(), "{stem}");
            }
            for key in ["PayloadOrganization", "PayloadScope", "PayloadRemovalDisallowed"] {
                assert!(xml.contains(&format!("<key>{key}</key>")), "{stem}: {key}");
            }
            assert!(xml.contains("<string>Lanyard</string>"), "{stem}");
            assert!(!xml.contains("<!--"), "{stem} has an XML comment");
        }
    }

    #[test]
    fn pupil_restrictions_leave_the_camera_to_its_own_profile() {
        let get = |stem: &str| BASELINE.iter().find(|(s, _)| *s == stem).map(|(_, xml)| *xml).expect("profile");
        assert!(!get("pupil-ipad-restrictions").contains("allowCamera"));
        assert!(get("pupil-camera-off").contains("<key>allowCamera</key>\n\t\t\t<false/>"));
    }

    #[test]
    fn load_names_the_broken_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (stem, xml) = BASELINE[0];
        std::fs::write(dir.path().join(format!("{stem}.mobileconfig")), xml).expect("write");
        std::fs::write(dir.path().join("notes.txt"), "ignored").expect("write");
        assert_eq!(load_baseline(dir.path()).expect("load").len(), 1);

        std::fs::write(dir.path().join("copy.mobileconfig"), xml).expect("write");
        let e = load_baseline(dir.path()).unwrap_err();
        assert!(e.to_string().contains("ks1-web-allowlist.mobileconfig"), "{e}");
        assert!(e.to_string().contains("copy.mobileconfig"), "{e}");

        std::fs::write(dir.path().join("copy.mobileconfig"), "<plist>").expect("write");
        let e = load_baseline(dir.path()).unwrap_err();
        assert!(matches!(&e, ProfileError::InFile { path, .. } if path.ends_with("copy.mobileconfig")), "{e}");

        let e = load_baseline(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(e, ProfileError::Io { .. }), "{e}");
    }
}
