//! The line import's pure parts: the listing checked, ids, the merge rules and the write.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use hooklog::backfill::quo::QuoLine;
use hooklog::backfill::twilio::TwilioNumber;
use hooklog::provider::SendProvider;
use toml_edit::DocumentMut;

use super::entry::{assign_ids, from_quo, from_twilio, slug, Listed};
use super::merge::{self, MergeError, PLACEHOLDER_BUSINESS};

fn quo(id: &str, number: &str, name: &str) -> QuoLine {
    QuoLine {
        id: id.into(),
        number: Some(number.into()),
        name: Some(name.into()),
    }
}

fn listed(number: &str, pn: Option<&str>, name: Option<&str>) -> Listed {
    Listed {
        provider: if pn.is_some() {
            SendProvider::Quo
        } else {
            SendProvider::Twilio
        },
        number: number.into(),
        phone_number_id: pn.map(str::to_owned),
        name: name.map(str::to_owned),
    }
}

#[test]
fn a_slug_keeps_ascii_letters_and_digits_and_survives_hostile_names() {
    assert_eq!(slug("Main Line"), "main-line");
    assert_eq!(slug("  Café Résumé  "), "cafe-resume");
    assert_eq!(
        slug("\"quoted\" = 'x'\n[[lines]]\nid = \"evil\""),
        "quoted-x-lines-id-evil"
    );
    assert_eq!(slug("📞 Sales 📞"), "sales");
    assert_eq!(slug("Ｆｕｌｌｗｉｄｔｈ"), "fullwidth");
    assert_eq!(slug("日本語"), "");
    assert_eq!(slug("---"), "");
    let long = slug(&"abc def ".repeat(20));
    assert!(long.len() <= 32 && !long.ends_with('-'), "{long}");
    for name in ["a\u{0}b", "x\r\ny", "tab\there", "ünïcödé", "\u{202e}rtl"] {
        let s = slug(name);
        assert!(
            s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{name:?} gave {s:?}"
        );
    }
}

#[test]
fn ids_are_unique_stable_across_listing_orders_and_clear_of_the_files_ids() {
    let lines = vec![
        listed("+15550000001", Some("PN1"), Some("Sales")),
        listed("+15550000002", Some("PN2"), Some("Sales")),
        listed("+15550000003", Some("PN3"), Some("Main")),
        listed("+15550000004", Some("PN4"), None),
        listed("+15550000005", Some("PN5"), Some("日本語")),
        listed("+15551110001", Some("PN6"), Some("Support")),
        listed("+15552220001", Some("PN7"), Some("Support")),
        listed("+15550000008", Some("PN8"), Some("Sales 0001")),
    ];
    let taken: BTreeSet<String> = ["quo-main".to_owned()].into();
    let ids = assign_ids(&lines, &taken);
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
    assert!(ids.iter().all(|id| !taken.contains(id)), "{ids:?}");
    assert_eq!(ids[2], "quo-main-0003", "the file has quo-main");
    assert_eq!(ids[3], "quo-15550000004", "no name: the number");
    assert_eq!(
        ids[4], "quo-15550000005",
        "nothing usable in the name: the number"
    );
    // Same name and same last four digits: the whole number.
    assert_eq!(ids[5], "quo-support-15551110001");
    assert_eq!(ids[6], "quo-support-15552220001");
    // "Sales" on …0001 would be quo-sales-0001, which "Sales 0001" is too: a counter in
    // number order settles it.
    assert!(ids[0].starts_with("quo-sales-") && ids[7].starts_with("quo-sales-0001"));

    let mut reversed = lines.clone();
    reversed.reverse();
    let mut again = assign_ids(&reversed, &taken);
    again.reverse();
    assert_eq!(again, ids, "the listing's order does not change the ids");
    assert_eq!(
        assign_ids(&lines, &taken),
        ids,
        "the same listing, the same ids"
    );
}

#[test]
fn ids_of_twilio_numbers_have_their_own_prefix() {
    let ids = assign_ids(
        &[listed("+15550000009", None, Some("Front desk"))],
        &BTreeSet::new(),
    );
    assert_eq!(ids, ["twilio-front-desk"]);
}

#[test]
fn listed_items_with_a_bad_number_or_id_or_listed_twice_are_skipped_with_the_reason() {
    let (ok, skipped) = from_quo(vec![
        quo("PN1", "+15550000001", "Main"),
        quo("PN2", "5550000002", "not e164"),
        quo("PN3\n[[lines]]", "+15550000003", "bad id"),
        quo("PN4", "+15550000001", "same number"),
        quo("PN1", "+15550000005", "same id"),
        QuoLine {
            id: "PN6".into(),
            number: None,
            name: None,
        },
        quo("PN7", "+1 555 000 0007", "spaced"),
    ]);
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].phone_number_id.as_deref(), Some("PN1"));
    let whys: Vec<(&str, &str)> = skipped
        .iter()
        .map(|s| (s.what.as_str(), s.why.as_str()))
        .collect();
    assert_eq!(whys.len(), 6, "{whys:?}");
    assert!(whys[0].1.contains("not E.164"));
    assert_eq!(whys[1].0, "PN3\\n[[lines]]", "escaped for the terminal");
    assert!(whys[1].1.contains("not a PN"));
    assert!(whys[2].1.contains("listed twice"));
    assert!(whys[3].1.contains("id is listed twice"));
    assert!(whys[4].1.contains("not E.164"));
    assert!(
        whys[5].1.contains("not E.164"),
        "no normalising of provider text"
    );

    let (ok, skipped) = from_twilio(vec![TwilioNumber {
        sid: "PNtw1".into(),
        phone_number: Some("+15550000009".into()),
        friendly_name: Some("(555) 000-0009".into()),
        ..TwilioNumber::default()
    }]);
    assert_eq!((ok.len(), skipped.len()), (1, 0));
    assert_eq!(ok[0].phone_number_id, None, "Twilio lines go by number");
}

const FILE: &str = r#"# hooklog configuration
data_dir = "/var/lib/hooklog"

[compliance]
quiet_end = "20:30"   # earlier than the law asks

# The main line: approved in March.
[[lines]]
id = "main"
number = "+15550000001"
provider = "openphone"
ten_dlc = "approved"       # campaign C123
business_name = "Acme Homes"

[[lines]]
id = "old"
number = "+15550000002"
provider = "openphone"
phone_number_id = "PNold"
ten_dlc = "rejected"
business_name = "Acme Homes"

[[lines]]
id = "tw"
number = "+15550000009"
provider = "twilio"
ten_dlc = "approved"
business_name = "Acme Homes"

[alerts]
min_severity = "warning"
"#;

fn doc(text: &str) -> DocumentMut {
    text.parse().unwrap()
}

fn quo_listing() -> Vec<Listed> {
    vec![
        listed("+15550000001", Some("PNmain"), Some("Main")),
        listed("+15550000002", Some("PNnew"), Some("Old")),
        listed(
            "+15550000003",
            Some("PN3"),
            Some("Sales \"East\"\n[[lines]]\nid = \"x\""),
        ),
    ]
}

#[test]
fn a_merge_keeps_the_operators_settings_fills_the_id_and_adds_new_lines_as_pending() {
    let mut d = doc(FILE);
    let r = merge::merge(
        &mut d,
        Path::new("h.toml"),
        SendProvider::Quo,
        &quo_listing(),
        &[],
    )
    .unwrap();
    let text = d.to_string();
    // Every comment and setting of the file is still there, in its place.
    for kept in [
        "# hooklog configuration\n",
        "quiet_end = \"20:30\"   # earlier than the law asks\n",
        "# The main line: approved in March.\n[[lines]]\nid = \"main\"\n",
        "ten_dlc = \"approved\"       # campaign C123\nbusiness_name = \"Acme Homes\"\n",
        "phone_number_id = \"PNold\"\nten_dlc = \"rejected\"\n",
        "[alerts]\nmin_severity = \"warning\"\n",
    ] {
        assert!(text.contains(kept), "lost {kept:?} in:\n{text}");
    }
    let v: toml::Value = toml::from_str(&text).unwrap();
    let lines = v["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["ten_dlc"].as_str(), Some("approved"));
    assert_eq!(lines[0]["business_name"].as_str(), Some("Acme Homes"));
    assert_eq!(lines[0]["id"].as_str(), Some("main"));
    assert_eq!(
        lines[0]["phone_number_id"].as_str(),
        Some("PNmain"),
        "filled"
    );
    assert_eq!(
        lines[1]["phone_number_id"].as_str(),
        Some("PNold"),
        "never overwritten"
    );
    let new = &lines[3];
    assert_eq!(new["number"].as_str(), Some("+15550000003"));
    assert_eq!(new["provider"].as_str(), Some("openphone"));
    assert_eq!(new["phone_number_id"].as_str(), Some("PN3"));
    assert_eq!(new["ten_dlc"].as_str(), Some("pending"));
    assert_eq!(
        new["business_name"].as_str(),
        Some("Acme Homes"),
        "the file's one business"
    );
    assert_eq!(new["id"].as_str(), Some("quo-sales-east-lines-id-x"));
    // The hostile name is a one-line comment; it added no table or key of its own.
    assert!(
        text.contains(
            "\n# Sales \"East\"\\n[[lines]]\\nid = \"x\" (imported from Quo, PN3)\n[[lines]]\n"
        ),
        "{text}"
    );
    assert!(v["alerts"].get("id").is_none());
    // The new entry follows the last [[lines]], before [alerts].
    assert!(
        text.find("PN3").unwrap() < text.find("[alerts]").unwrap(),
        "{text}"
    );

    assert_eq!(r.added.len(), 1);
    assert_eq!(r.filled.len(), 1);
    assert_eq!(r.filled[0].id, "main");
    assert_eq!(r.unchanged.len(), 0);
    assert_eq!(r.differing.len(), 1);
    assert_eq!(
        (
            r.differing[0].key,
            r.differing[0].in_file.as_str(),
            r.differing[0].listed.as_str()
        ),
        ("phone_number_id", "PNold", "PNnew")
    );
    assert!(r.missing.is_empty(), "the Twilio line is not Quo's to miss");
    assert!(r.business_name_copied);
}

#[test]
fn a_second_merge_of_the_same_listing_changes_nothing() {
    let mut d = doc(FILE);
    merge::merge(
        &mut d,
        Path::new("h.toml"),
        SendProvider::Quo,
        &quo_listing(),
        &[],
    )
    .unwrap();
    let once = d.to_string();
    let mut again = doc(&once);
    let r = merge::merge(
        &mut again,
        Path::new("h.toml"),
        SendProvider::Quo,
        &quo_listing(),
        &[],
    )
    .unwrap();
    assert_eq!(again.to_string(), once);
    assert_eq!(
        (r.added.len(), r.filled.len(), r.unchanged.len()),
        (0, 0, 2)
    );
    assert_eq!(r.differing.len(), 1, "still reported, still kept");
}

#[test]
fn lines_the_provider_no_longer_lists_and_another_providers_number_are_reported_not_changed() {
    let mut d = doc(FILE);
    let listing = vec![
        listed("+15550000001", Some("PNmain"), Some("Main")),
        listed("+15550000009", Some("PNtw"), Some("Was Twilio")),
    ];
    let r = merge::merge(
        &mut d,
        Path::new("h.toml"),
        SendProvider::Quo,
        &listing,
        &[],
    )
    .unwrap();
    assert_eq!(r.missing.len(), 1);
    assert_eq!(r.missing[0].id, "old");
    assert_eq!(r.differing.len(), 1);
    assert_eq!(r.differing[0].key, "provider");
    assert_eq!(r.differing[0].in_file, "twilio");
    let text = d.to_string();
    assert!(text.contains("id = \"old\""), "never deleted");
    assert!(!text.contains("PNtw"), "a Twilio entry gets no Quo id");
}

#[test]
fn new_lines_get_the_placeholder_business_name_when_the_file_has_several_or_none() {
    let mut d = doc(&FILE.replacen(
        "business_name = \"Acme Homes\"",
        "business_name = \"Other Co\"",
        1,
    ));
    let r = merge::merge(
        &mut d,
        Path::new("h.toml"),
        SendProvider::Quo,
        &quo_listing(),
        &[],
    )
    .unwrap();
    assert!(!r.business_name_copied);
    assert_eq!(r.business_name.as_deref(), Some(PLACEHOLDER_BUSINESS));

    let mut empty = doc("data_dir = \"/x\"\n\n[server]\nlisten = [\"127.0.0.1:0\"]\n");
    let r = merge::merge(
        &mut empty,
        Path::new("h.toml"),
        SendProvider::Quo,
        &quo_listing(),
        &[],
    )
    .unwrap();
    assert_eq!(r.added.len(), 3);
    let text = empty.to_string();
    assert!(
        text.starts_with("data_dir = \"/x\"\n\n[server]\nlisten = [\"127.0.0.1:0\"]\n"),
        "{text}"
    );
    let v: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(v["lines"].as_array().unwrap().len(), 3);
    assert_eq!(
        v["lines"][0]["business_name"].as_str(),
        Some(PLACEHOLDER_BUSINESS)
    );
    assert!(v["server"].get("lines").is_none(), "{text}");
}

#[test]
fn a_file_whose_lines_are_not_tables_or_would_not_load_is_refused() {
    let mut inline = doc("lines = []\n");
    assert!(matches!(
        merge::merge(
            &mut inline,
            Path::new("h.toml"),
            SendProvider::Quo,
            &quo_listing(),
            &[]
        ),
        Err(MergeError::NotArrayOfTables { .. })
    ));
    // The file's own entry is broken: the merge names it and writes nothing.
    let mut bad = doc(&FILE.replace("ten_dlc = \"rejected\"", "ten_dlc = \"maybe\""));
    let err = merge::merge(
        &mut bad,
        Path::new("h.toml"),
        SendProvider::Quo,
        &quo_listing(),
        &[],
    )
    .unwrap_err();
    assert!(matches!(err, MergeError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("nothing was written"), "{err}");
    let mut dup = doc(&FILE.replace("id = \"tw\"", "id = \"main\""));
    let err = merge::merge(
        &mut dup,
        Path::new("h.toml"),
        SendProvider::Quo,
        &quo_listing(),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("lines[2].id"), "{err}");
}

#[test]
fn the_write_is_atomic_keeps_a_backup_and_the_files_permissions_and_follows_a_link() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.toml");
    std::fs::write(&real, "old = 1\n").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = dir.path().join("hooklog.toml");
    std::os::unix::fs::symlink(&real, &link).unwrap();

    let old_meta = std::fs::metadata(&real).unwrap();
    let (written, bak) = merge::write_atomically(&link, "new = 2\n").unwrap();
    assert_eq!(written, std::fs::canonicalize(&real).unwrap());
    assert_eq!(std::fs::read_to_string(&real).unwrap(), "new = 2\n");
    assert_eq!(std::fs::read_to_string(&bak).unwrap(), "old = 1\n");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let new_meta = std::fs::metadata(&real).unwrap();
    assert_eq!(new_meta.permissions().mode() & 0o777, 0o640);
    assert_eq!(
        (new_meta.uid(), new_meta.gid()),
        (old_meta.uid(), old_meta.gid())
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn the_report_names_every_change_and_the_diff_shows_only_additions() {
    let mut d = doc(FILE);
    let r = merge::merge(
        &mut d,
        Path::new("h.toml"),
        SendProvider::Quo,
        &quo_listing(),
        &[],
    )
    .unwrap();
    let text = super::report_text(Path::new("h.toml"), SendProvider::Quo, &r);
    assert!(
        text.starts_with(
            "lines import from Quo into h.toml: 1 added, 1 filled, 0 unchanged, 1 differing, \
             0 missing, 0 skipped\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("filled     main +15550000001: phone_number_id = PNmain"),
        "{text}"
    );
    assert!(text.contains("phone_number_id is \"PNold\" in the file, Quo lists it as \"PNnew\""));
    assert!(text.contains("ten_dlc = \"pending\""));
    let diff = merge::diff(Path::new("h.toml"), FILE, &d.to_string());
    let changed: Vec<&str> = diff
        .lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .collect();
    assert!(changed.iter().all(|l| l.starts_with('+')), "{diff}");
    assert!(changed.contains(&"+phone_number_id = \"PNmain\""), "{diff}");
}
