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

/// Validates `feed/index.json` and every title file of a release; returns
/// how many files were checked.
pub fn validate_release(release: &Path) -> usize {
    let (index, title, any) = (schema_for("index"), schema_for("title"), schema_for("any"));
    let feed = release.join("feed");
    let doc: Value =
        serde_json::from_slice(&std::fs::read(feed.join("index.json")).unwrap()).unwrap();
    assert_valid(&index, &doc, "index.json");
    assert_valid(&any, &doc, "index.json");
    assert!(!title.is_valid(&doc));
    let mut checked = 1;
    for e in std::fs::read_dir(feed.join("titles")).unwrap() {
        let path = e.unwrap().path();
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_valid(&title, &doc, &path.display().to_string());
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
