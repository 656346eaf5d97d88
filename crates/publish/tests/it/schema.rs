//! Validation of feed files against `docs/feed.schema.json` (draft 2020-12).

use std::path::Path;

use serde_json::{Value, json};

fn schema_for(def: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/feed.schema.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::meta::validate(&schema).unwrap();
    if def != "any" {
        // Same document, rooted at one definition, so a title file cannot
        // pass as an index.
        let obj = schema.as_object_mut().unwrap();
        obj.remove("oneOf");
        obj.insert("$ref".into(), json!(format!("#/$defs/{def}")));
    }
    jsonschema::draft202012::new(&schema).unwrap()
}

fn assert_valid(v: &jsonschema::Validator, doc: &Value, what: &str) {
    let errors: Vec<String> = v.iter_errors(doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{what}: {errors:?}");
}

/// Validates `feed/index.json` and every title or shard file of a release
/// against the definitions of its layout; returns how many files were checked.
pub fn validate_release(release: &Path) -> usize {
    let feed = release.join("feed");
    let doc: Value =
        serde_json::from_slice(&std::fs::read(feed.join("index.json")).unwrap()).unwrap();
    let (index_def, file_def, dir) = match doc["schema_version"].as_u64() {
        Some(1) => ("index", "title", "titles"),
        Some(2) => ("shardedIndex", "shard", "shards"),
        other => panic!("unexpected schema_version {other:?}"),
    };
    let (index, file, any) = (
        schema_for(index_def),
        schema_for(file_def),
        schema_for("any"),
    );
    assert_valid(&index, &doc, "index.json");
    assert_valid(&any, &doc, "index.json");
    assert!(!file.is_valid(&doc));
    let mut checked = 1;
    let entries = match std::fs::read_dir(feed.join(dir)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && doc["titles"] == 0 => return 1,
        Err(e) => panic!("{dir}: {e}"),
    };
    for e in entries {
        let path = e.unwrap().path();
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_valid(&file, &doc, &path.display().to_string());
        assert_valid(&any, &doc, &path.display().to_string());
        assert!(!index.is_valid(&doc));
        checked += 1;
    }
    checked
}

#[test]
fn schema_rejects_what_the_format_forbids() {
    let index = schema_for("index");
    let title = schema_for("title");
    let good_index = json!({"schema_version": 1, "window": {"first": "2024-01", "last": "2024-12"},
        "measure": "llr", "min_support": 5, "max_titles_per_borrower": 100, "max_related": 20,
        "titles": 3});
    assert_valid(&index, &good_index, "good index");
    for (key, bad) in [
        ("schema_version", json!(2)),
        ("measure", json!("pagerank")),
        ("min_support", json!(1)),
        ("titles", json!(-1)),
        ("window", json!({"first": "2024-13", "last": "2024-12"})),
        ("window", json!({"first": "2024-01"})),
    ] {
        let mut doc = good_index.clone();
        doc[key] = bad;
        assert!(!index.is_valid(&doc), "{key}");
    }
    let mut extra = good_index.clone();
    extra["borrowers"] = json!(["x"]);
    assert!(!index.is_valid(&extra));

    let good_title =
        json!({"schema_version": 1, "title": "a", "related": [{"title": "b", "score": 1.5}]});
    assert_valid(&title, &good_title, "good title");
    for bad in [
        json!({"schema_version": 1, "title": "", "related": [{"title": "b", "score": 1.5}]}),
        json!({"schema_version": 1, "title": "a", "related": []}),
        json!({"schema_version": 1, "title": "a", "related": [{"title": "b", "score": "1"}]}),
        json!({"schema_version": 1, "title": "a", "related": [{"title": "b", "score": 1, "borrower": "x"}]}),
        json!({"schema_version": 1, "title": "a"}),
    ] {
        assert!(!title.is_valid(&bad), "{bad}");
    }
}

#[test]
fn schema_rejects_what_the_sharded_format_forbids() {
    let index = schema_for("shardedIndex");
    let shard = schema_for("shard");
    let good_index = json!({"schema_version": 2, "window": {"first": "2024-01", "last": "2024-12"},
        "measure": "llr", "min_support": 5, "max_titles_per_borrower": 100, "max_related": 20,
        "titles": 3, "shard_bits": 4});
    assert_valid(&index, &good_index, "good sharded index");
    assert!(!schema_for("index").is_valid(&good_index));
    for (key, bad) in [
        ("schema_version", json!(1)),
        ("shard_bits", json!(17)),
        ("shard_bits", json!(-1)),
    ] {
        let mut doc = good_index.clone();
        doc[key] = bad;
        assert!(!index.is_valid(&doc), "{key}");
    }
    let mut no_bits = good_index.clone();
    no_bits.as_object_mut().unwrap().remove("shard_bits");
    assert!(!index.is_valid(&no_bits));
    let mut v1_with_bits = no_bits.clone();
    v1_with_bits["schema_version"] = json!(1);
    v1_with_bits["shard_bits"] = json!(3);
    assert!(!schema_for("index").is_valid(&v1_with_bits));

    let good_shard = json!({"schema_version": 2, "shard": "0a", "titles": [
        {"title": "a", "related": [{"title": "b", "score": 1.5}]}]});
    assert_valid(&shard, &good_shard, "good shard");
    assert_valid(
        &shard,
        &json!({"schema_version": 2, "shard": "0", "titles": []}),
        "empty shard",
    );
    for bad in [
        json!({"schema_version": 2, "shard": "0A", "titles": []}),
        json!({"schema_version": 2, "shard": "", "titles": []}),
        json!({"schema_version": 1, "shard": "0", "titles": []}),
        json!({"schema_version": 2, "shard": "0", "titles": [{"title": "a", "related": []}]}),
        json!({"schema_version": 2, "shard": "0", "titles": [{"title": "a", "related": [{"title": "b", "score": 1}], "borrower": "x"}]}),
        json!({"schema_version": 2, "shard": "0"}),
    ] {
        assert!(!shard.is_valid(&bad), "{bad}");
    }
}
