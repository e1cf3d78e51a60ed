//! Tests of `[[postgres.mirror]]` without a database: the static checks, the fit against a
//! table's columns, and the statement's text.

use super::*;

fn mapping(table: &str, from: &str, key: &str, columns: &[(&str, &str)]) -> MirrorConfig {
    MirrorConfig {
        table: table.into(),
        from: from.into(),
        key: key.into(),
        columns: columns
            .iter()
            .map(|(c, f)| (c.to_string(), f.to_string()))
            .collect(),
    }
}

fn messages() -> MirrorConfig {
    mapping(
        "public.openphone_messages",
        "openphone_messages",
        "id",
        &[("id", "id"), ("payload", "payload")],
    )
}

fn col(name: &str, udt: &str, nullable: bool, filled: bool) -> TargetColumn {
    let data_type = match udt {
        "text" => "text",
        "varchar" => "character varying",
        "int8" => "bigint",
        "int4" => "integer",
        "jsonb" => "jsonb",
        "timestamptz" => "timestamp with time zone",
        "_text" => "ARRAY",
        _ => "USER-DEFINED",
    };
    TargetColumn {
        name: name.into(),
        data_type: data_type.into(),
        udt_name: udt.into(),
        nullable,
        filled,
        generated: false,
    }
}

#[test]
fn identifiers_are_quoted_and_anything_that_could_break_out_is_refused() {
    assert_eq!(quote_ident("event_id").unwrap(), "\"event_id\"");
    assert_eq!(quote_ident("createdAt").unwrap(), "\"createdAt\"");
    assert_eq!(quote_ident("_x1").unwrap(), "\"_x1\"");
    for bad in [
        "",
        "1abc",
        "a\"b",
        "id\"; drop table users; --",
        "a b",
        "a.b",
        "a-b",
        "é",
        "a\u{0}",
        &"x".repeat(64),
    ] {
        assert!(quote_ident(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn the_static_checks_name_the_key_of_what_is_wrong() {
    let cases: Vec<(MirrorConfig, &str)> = vec![
        (
            mapping(
                "openphone_messages",
                "openphone_messages",
                "id",
                &[("id", "id")],
            ),
            "mirror[0].table: ",
        ),
        (
            mapping(
                "public.x\"; drop table y",
                "openphone_messages",
                "id",
                &[("id", "id")],
            ),
            "mirror[0].table: ",
        ),
        (
            mapping("public.t", "openphone_messagez", "id", &[("id", "id")]),
            "mirror[0].from: ",
        ),
        (
            mapping("public.t", "openphone_messages", "id", &[("id", "nope")]),
            "mirror[0].columns: ",
        ),
        (
            mapping(
                "public.t",
                "openphone_messages",
                "id",
                &[("id", "payload:data")],
            ),
            "mirror[0].columns: ",
        ),
        (
            mapping(
                "public.t",
                "openphone_messages",
                "id",
                &[("id", "payload:/a~2b")],
            ),
            "mirror[0].columns: ",
        ),
        (
            mapping("public.t", "openphone_messages", "id", &[("i d", "id")]),
            "mirror[0].columns: ",
        ),
        (
            mapping("public.t", "openphone_messages", "sid", &[("id", "id")]),
            "mirror[0].key: ",
        ),
        (
            mapping("public.t", "openphone_messages", "id", &[]),
            "mirror[0].columns: ",
        ),
    ];
    for (m, prefix) in cases {
        let e = validate_config(std::slice::from_ref(&m)).unwrap_err();
        assert!(e.starts_with(prefix), "{m:?}: {e}");
    }
    let e = validate_config(&[messages(), messages()]).unwrap_err();
    assert!(e.starts_with("mirror[1].table: "), "{e}");
    // An unknown field says what is allowed.
    let e =
        validate_config(&[mapping("public.t", "twilio_sms", "sid", &[("sid", "id")])]).unwrap_err();
    assert!(
        e.contains("`id` is not a field of `twilio_sms`") && e.contains("sid"),
        "{e}"
    );
    // And the whole config names the section.
    let c = crate::consumers::postgres::PostgresConfig {
        mirror: vec![mapping("public.t", "nope", "id", &[("id", "id")])],
        ..Default::default()
    };
    assert!(c.validate().unwrap_err().starts_with("mirror[0].from:"));
}

#[test]
fn fields_are_columns_the_payload_or_json_pointers() {
    let t = &tables::OPENPHONE_MESSAGES;
    assert_eq!(
        Field::parse(t, "body").unwrap(),
        Field::Column(&t.columns[t.index("body").unwrap()])
    );
    assert_eq!(Field::parse(t, "payload").unwrap(), Field::Payload);
    assert_eq!(Field::parse(t, "payload:").unwrap(), Field::Payload);
    assert_eq!(
        Field::parse(t, "payload:/data/object/a~1b/c~0d/0").unwrap(),
        Field::Pointer(vec![
            "data".into(),
            "object".into(),
            "a/b".into(),
            "c~d".into(),
            "0".into()
        ])
    );
    assert_eq!(
        Field::parse(t, "payload:/").unwrap(),
        Field::Pointer(vec!["".into()])
    );
    assert_eq!(
        Field::parse(t, "created_at").unwrap().ty(),
        FieldType::Sql(Ty::Ts)
    );
    assert_eq!(
        Field::parse(t, "to_numbers").unwrap().ty(),
        FieldType::Sql(Ty::TextArray)
    );
    for bad in [
        "Body",
        "payload:data",
        "payload:/~",
        "payload:/~x",
        "",
        "payload ",
    ] {
        assert!(Field::parse(t, bad).is_err(), "{bad}");
    }
}

#[test]
fn only_the_documented_type_pairs_fit() {
    use Conversion::*;
    let sql = FieldType::Sql;
    let fits = [
        (sql(Ty::Text), "text", Same),
        (sql(Ty::Text), "varchar", Same),
        (sql(Ty::Text), "bpchar", Same),
        (sql(Ty::Int8), "int8", Same),
        (sql(Ty::Int8), "numeric", Same),
        (sql(Ty::Int4), "int8", Same),
        (sql(Ty::Int2), "int4", Same),
        (sql(Ty::Bool), "bool", Same),
        (sql(Ty::Ts), "timestamptz", Same),
        (sql(Ty::Ts), "timestamp", Utc),
        (sql(Ty::Json), "jsonb", Same),
        (sql(Ty::Json), "json", ToJson),
        (sql(Ty::TextArray), "_text", Same),
        (sql(Ty::TextArray), "jsonb", ArrayToJsonb),
        (FieldType::JsonValue, "jsonb", PointerJsonb),
        (FieldType::JsonValue, "json", PointerJson),
        (FieldType::JsonValue, "text", PointerText),
    ];
    for (f, udt, c) in fits {
        assert_eq!(conversion(f, udt), Some(c), "{f} → {udt}");
    }
    let refused = [
        (sql(Ty::Text), "int8"),
        (sql(Ty::Text), "jsonb"),
        (sql(Ty::Int8), "int4"),
        (sql(Ty::Int8), "text"),
        (sql(Ty::Int4), "int2"),
        (sql(Ty::Bool), "text"),
        (sql(Ty::Ts), "text"),
        (sql(Ty::Ts), "date"),
        (sql(Ty::Json), "text"),
        (sql(Ty::TextArray), "text"),
        (FieldType::JsonValue, "int8"),
        (sql(Ty::Text), "my_enum"),
    ];
    for (f, udt) in refused {
        assert_eq!(conversion(f, udt), None, "{f} → {udt}");
    }
}

#[test]
fn a_table_that_does_not_fit_is_refused_with_table_column_types_and_what_to_do() {
    let m = &validate_config(&[mapping(
        "public.openphone_messages",
        "openphone_messages",
        "id",
        &[
            ("id", "id"),
            ("payload", "payload"),
            ("sent", "created_at"),
            ("ghost", "body"),
        ],
    )])
    .unwrap()[0];
    let target = [
        col("id", "text", false, false),
        col("payload", "text", true, false),
        col("sent", "timestamptz", true, false),
        col("owner", "int8", false, false),
        col("serial", "int8", false, true),
    ];
    let problems = fit(m, &target).unwrap_err();
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 3, "{text:#?}");
    // In the mapping's order (key first, then by name), then the unmapped columns.
    assert!(
        text[0].starts_with("public.openphone_messages.ghost: no such column")
            && text[0].contains("id, payload, sent, owner, serial"),
        "{}",
        text[0]
    );
    assert!(
        text[1].starts_with(
            "public.openphone_messages.payload: its type text cannot hold the field's type jsonb"
        ) && text[1].contains("jsonb or json"),
        "{}",
        text[1]
    );
    assert!(
        text[2].starts_with(
            "public.openphone_messages.owner: NOT NULL without a default and not mapped"
        ),
        "{}",
        text[2]
    );
    let all = describe_problems(&problems);
    assert!(all.starts_with("postgres.mirror refused"), "{all}");

    let missing = fit(m, &[]).unwrap_err();
    assert_eq!(missing[0].column, None);
    assert!(
        missing[0].message.starts_with("no such table"),
        "{missing:?}"
    );

    let ok = [
        col("id", "varchar", false, false),
        col("payload", "jsonb", true, false),
        col("sent", "timestamptz", true, false),
        col("ghost", "text", true, false),
        col("serial", "int8", false, true),
    ];
    assert_eq!(fit(m, &ok).unwrap(), vec![Conversion::Same; 4]);
}

#[test]
fn the_statement_updates_then_inserts_the_missing_keys_with_only_quoted_names() {
    let m = &validate_config(&[mapping(
        "node.openphone_messages",
        "openphone_messages",
        "msgId",
        &[
            ("msgId", "id"),
            ("payload", "payload"),
            ("object_id", "payload:/data/object/id"),
            ("numbers", "to_numbers"),
        ],
    )])
    .unwrap()[0];
    // Key first, then by name.
    let names: Vec<&str> = m.columns.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(names, ["msgId", "numbers", "object_id", "payload"]);
    let conv = [
        Conversion::Same,
        Conversion::ArrayToJsonb,
        Conversion::PointerText,
        Conversion::Same,
    ];
    let s = statement("\"hl\"", m, &conv).unwrap();
    assert_eq!(s.target, "node.openphone_messages");
    assert_eq!(
        s.pointers,
        vec![vec!["data".to_string(), "object".into(), "id".into()]]
    );
    assert_eq!(s.types(), vec![Type::TEXT_ARRAY, Type::TEXT_ARRAY]);
    let expected = "with src as (select distinct on (x.c0) x.* from (select s.id as c0, \
        to_jsonb(s.to_numbers) as c1, (e.payload #>> $2::text[]) as c2, e.payload as c3, \
        s.last_seq as o from \"hl\".openphone_messages s left join \"hl\".omni_events e on \
        e.seq = s.last_seq where s.id = any($1::text[])) x where x.c0 is not null order by \
        x.c0, x.o desc), \
        upd as (update \"node\".\"openphone_messages\" t set \"msgId\" = src.c0, \"numbers\" = \
        src.c1, \"object_id\" = src.c2, \"payload\" = src.c3 from src where t.\"msgId\" = src.c0 \
        returning t.\"msgId\" as k), \
        ins as (insert into \"node\".\"openphone_messages\" (\"msgId\", \"numbers\", \
        \"object_id\", \"payload\") select c0, c1, c2, c3 from src where not exists (select 1 \
        from upd where upd.k = src.c0) returning 1) \
        select (select count(*) from upd) + (select count(*) from ins)";
    assert_eq!(s.sql, expected);
}

#[test]
fn omni_events_mirrors_originals_only_and_reads_its_own_payload() {
    let m = &validate_config(&[mapping(
        "public.omni_events",
        "omni_events",
        "event_id",
        &[
            ("event_id", "dedup_key"),
            ("payload", "payload"),
            ("type", "kind"),
        ],
    )])
    .unwrap()[0];
    let s = statement("\"hl\"", m, &[Conversion::Same; 3]).unwrap();
    assert!(!s.sql.contains("join"), "{}", s.sql);
    assert!(s.sql.contains("s.payload as c1"), "{}", s.sql);
    assert!(
        s.sql
            .contains("where s.seq = any($1::bigint[]) and not s.duplicate"),
        "{}",
        s.sql
    );
    assert_eq!(s.types(), vec![Type::INT8_ARRAY]);
}

#[test]
fn every_source_table_has_one_key_and_a_record_column() {
    for t in tables::TABLES {
        assert!(key_column(t).is_some(), "{}", t.name);
        let r = record_column(t).unwrap_or_else(|| panic!("{}", t.name));
        assert_eq!(t.columns[t.index(r).unwrap()].ty, Ty::Int8, "{}", t.name);
    }
    assert_eq!(
        record_column(&tables::PROCESSED_WEBHOOK_EVENTS),
        Some("first_seq")
    );
    assert_eq!(record_column(&tables::TWILIO_CALLS), Some("last_seq"));
    assert_eq!(record_column(&tables::OMNI_EVENTS), Some("seq"));
}

#[test]
fn a_setter_refuses_an_invalid_mirror_and_keeps_the_running_one() {
    let setter = crate::consumers::postgres::MirrorSetter::new(vec![messages()]);
    let e = setter
        .set(vec![mapping("public.t", "nope", "id", &[("id", "id")])])
        .unwrap_err();
    assert!(e.starts_with("postgres.mirror[0].from:"), "{e}");
    assert_eq!(*setter.get(), vec![messages()]);
    setter.set(Vec::new()).unwrap();
    assert!(setter.get().is_empty());
}

#[test]
fn the_file_s_mappings_load_and_a_bad_one_is_named_with_its_file() {
    use std::io::Write;
    let load = |text: &str| {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        crate::config::Config::load_from(Some(f.path()), Vec::<(String, String)>::new())
    };
    let good = "[[postgres.mirror]]\ntable = \"public.openphone_messages\"\nfrom = \"openphone_messages\"\nkey = \"id\"\n[postgres.mirror.columns]\nid = \"id\"\npayload = \"payload:/data/object\"\n";
    let (c, _) = load(good).unwrap();
    assert_eq!(
        c.postgres.mirror,
        vec![mapping(
            "public.openphone_messages",
            "openphone_messages",
            "id",
            &[("id", "id"), ("payload", "payload:/data/object")]
        )]
    );
    // The effective configuration shows it, and reads back the same.
    let shown = c.to_redacted_toml();
    assert!(shown.contains("[[postgres.mirror]]"), "{shown}");

    let bad = good.replace("from = \"openphone_messages\"", "from = \"messages\"");
    let e = load(&bad).unwrap_err().to_string();
    assert!(
        e.contains("postgres.mirror[0].from") && e.contains("file "),
        "{e}"
    );
    let unknown = good.replace("key = \"id\"", "key = \"id\"\nwhere = \"x\"");
    let e = load(&unknown).unwrap_err().to_string();
    assert!(e.contains("where"), "{e}");
}
