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
    assert_eq!(doc["schema_version"], 3);
    let (file_def, dir) = match doc["layout"].as_str() {
        Some("titles") => ("title", "titles"),
        Some("shards") => ("shard", "shards"),
        other => panic!("unexpected layout {other:?}"),
    };
    let (index, file, any) = (schema_for("index"), schema_for(file_def), schema_for("any"));
    assert_valid(&index, &doc, "index.json");
    assert_valid(&any, &doc, "index.json");
    assert!(!file.is_valid(&doc));
    let mut checked = 1;
    let entries = match std::fs::read_dir(feed.join(dir)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir == "titles" => return 1,
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
    let shard = schema_for("shard");
    let good_index = json!({"schema_version": 3, "layout": "shards", "shard_bits": 4, "max_related": 20, "updated": "2024-12"});
    assert_valid(&index, &good_index, "good index");
    let per_title =
        json!({"schema_version": 3, "layout": "titles", "max_related": 20, "updated": "2024-12"});
    assert_valid(&index, &per_title, "per-title index");
    for (key, value) in [
        ("schema_version", json!(2)),
        ("layout", json!("files")),
        ("shard_bits", json!(17)),
        ("max_related", json!(0)),
        ("updated", json!("2024-13")),
        ("window", json!({"first": "2024-01", "last": "2024-12"})),
        ("min_support", json!(5)),
        ("titles", json!(10)),
    ] {
        let mut bad = good_index.clone();
        bad[key] = value;
        assert!(!index.is_valid(&bad), "{key}: {bad}");
    }
    let mut no_bits = good_index.clone();
    no_bits.as_object_mut().unwrap().remove("shard_bits");
    assert!(!index.is_valid(&no_bits));
    let mut bits_without_shards = per_title.clone();
    bits_without_shards["shard_bits"] = json!(0);
    assert!(!index.is_valid(&bits_without_shards));

    assert_valid(
        &title,
        &json!({"schema_version": 3, "title": "a", "related": ["b", "c"]}),
        "good title",
    );
    for bad in [
        json!({"schema_version": 3, "title": "", "related": ["b"]}),
        json!({"schema_version": 3, "title": "a", "related": []}),
        json!({"schema_version": 3, "title": "a", "related": ["b", "b"]}),
        json!({"schema_version": 3, "title": "a", "related": [{"title": "b", "score": 1.5}]}),
        json!({"schema_version": 3, "title": "a", "related": ["b"], "borrower": "x"}),
        json!({"schema_version": 3, "title": "a", "related": [5]}),
        json!({"schema_version": 1, "title": "a", "related": ["b"]}),
    ] {
        assert!(!title.is_valid(&bad), "{bad}");
    }
    assert_valid(
        &shard,
        &json!({"schema_version": 3, "shard": "0a", "titles": [{"title": "a", "related": ["b"]}]}),
        "good shard",
    );
    assert_valid(
        &shard,
        &json!({"schema_version": 3, "shard": "0", "titles": []}),
        "empty",
    );
    for bad in [
        json!({"schema_version": 3, "shard": "0A", "titles": []}),
        json!({"schema_version": 3, "shard": "0a", "titles": [{"title": "a", "related": []}]}),
        json!({"schema_version": 3, "shard": "0a", "titles": [{"title": "a", "related": ["b"], "n": 3}]}),
    ] {
        assert!(!shard.is_valid(&bad), "{bad}");
    }
}
