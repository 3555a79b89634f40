//! Every stage fails with the one user-facing error type, and callers (and
//! these tests) tell the mistakes apart by its kind, not by its wording.
//! The text is tested where it is shown (profile_errors.rs, safety.rs).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::*;
use nodeimg::diag::{diagnostic_of, Kind};
use nodeimg::BuildOptions;

fn build_kind(s: &Scratch, opts: BuildOptions) -> (Kind, String) {
    let e = nodeimg::build(&s.profile(), &opts).expect_err("the build is refused");
    let f = diagnostic_of(&e).unwrap_or_else(|| panic!("not a Diagnostic: {e:#}"));
    (f.kind, f.to_string())
}

fn out(s: &Scratch) -> BuildOptions {
    BuildOptions {
        out_dir: Some(s.path("out")),
        ..Default::default()
    }
}

#[test]
fn each_mistake_fails_with_its_kind_and_names_its_place() {
    let s = Scratch::with_profile(&shipped_profile("tutorial.yaml"));

    // A machine that is not in the profile.
    let (kind, text) = build_kind(
        &s,
        BuildOptions {
            only: vec!["worker-9".into()],
            ..out(&s)
        },
    );
    assert_eq!(kind, Kind::Usage, "{text}");
    assert!(text.starts_with("--only \"worker-9\": error: "), "{text}");

    // An output folder holding someone else's file.
    fs::create_dir(s.path("out")).unwrap();
    fs::write(s.path("out/notes.txt"), "mine").unwrap();
    let (kind, text) = build_kind(&s, out(&s));
    assert_eq!(kind, Kind::Output, "{text}");
    assert!(text.contains("notes.txt"), "{text}");
    fs::remove_dir_all(s.path("out")).unwrap();

    // A secrets file others can read.
    s.build("out");
    let secrets = s.path("profile.secrets.yaml");
    fs::set_permissions(&secrets, fs::Permissions::from_mode(0o644)).unwrap();
    let (kind, text) = build_kind(&s, out(&s));
    assert_eq!(kind, Kind::Secrets, "{text}");
    assert!(text.starts_with(&secrets.display().to_string()), "{text}");
    fs::set_permissions(&secrets, fs::Permissions::from_mode(0o600)).unwrap();

    // A template that does not parse, and one that renders a seed nodeimg's
    // own checks refuse.
    fs::create_dir_all(s.path("tpl/files")).unwrap();
    fs::write(s.path("tpl/files/hosts"), "{% if %}\n").unwrap();
    let templates = BuildOptions {
        templates: Some(s.path("tpl")),
        ..out(&s)
    };
    let (kind, text) = build_kind(&s, templates.clone());
    assert_eq!(kind, Kind::Template, "{text}");
    fs::remove_file(s.path("tpl/files/hosts")).unwrap();
    fs::write(s.path("tpl/meta-data.yaml"), "instance-id: [unclosed\n").unwrap();
    let (kind, text) = build_kind(&s, templates);
    assert_eq!(kind, Kind::Seed, "{text}");
    assert!(text.contains("/meta-data:1:"), "{text}");
}
