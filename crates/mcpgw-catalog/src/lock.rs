//! The lockfile, `FILE.lock` beside catalog `FILE`: what each server was
//! when someone reviewed it. Written by `mcpgw lock`; when present, `mcpgw
//! run` serves only what matches it (the mux's `pin` module enforces the
//! definitions, the engine code the image).
//!
//! YAML, sorted by server and item name, so a change reads well in a pull
//! request. Per server: the image's content digest (the engine's image ID,
//! `sha256:…`), and per tool, prompt, resource (by URI) and resource
//! template (by URI template) the SHA-256 of its canonical definition
//! ([`canonical`]: every field a model sees, keys sorted, no whitespace)
//! with that definition beside it, pretty-printed, so drift can be shown
//! as a diff. A pin whose definition does not hash to its `sha256` was
//! edited by hand, and the file is refused.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::CatalogError;

/// The format version this build writes and reads.
pub const LOCK_VERSION: u32 = 1;

/// A whole lockfile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// Always [`LOCK_VERSION`].
    pub version: u32,
    /// Each server's pins, by server name.
    #[serde(default)]
    pub servers: BTreeMap<String, ServerLock>,
}

/// What one server was when it was locked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerLock {
    /// The image's content digest, `sha256:…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Tools, by upstream name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tools: BTreeMap<String, Pin>,
    /// Prompts, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prompts: BTreeMap<String, Pin>,
    /// Resources, by URI.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, Pin>,
    /// Resource templates, by URI template.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resource_templates: BTreeMap<String, Pin>,
}

/// The pin of one definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// SHA-256 of the canonical definition, in hex.
    pub sha256: String,
    /// The definition, pretty-printed JSON with sorted keys.
    pub definition: String,
    /// When the catalog rewrites the definition (a tool's `rename`,
    /// `describe`, `hide_params`), the pin of the server's own, recorded
    /// beside the one clients see: a change upstream that the rewrite
    /// would mask is drift all the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Box<Pin>>,
}

impl Pin {
    /// The pin of `definition`.
    #[must_use]
    pub fn of(definition: &Value) -> Self {
        Self {
            sha256: digest(definition),
            definition: pretty(definition),
            upstream: None,
        }
    }

    /// The pin of `shown`, the catalog's rewrite of the server's
    /// `original` definition, with the original's beside it.
    #[must_use]
    pub fn rewritten(shown: &Value, original: &Value) -> Self {
        Self {
            upstream: Some(Box::new(Self::of(original))),
            ..Self::of(shown)
        }
    }

    /// Whether `definition` is the pinned one.
    #[must_use]
    pub fn matches(&self, definition: &Value) -> bool {
        digest(definition) == self.sha256
    }

    /// Whether the server's own definition is the pinned one: `original`
    /// is `None` when the catalog does not rewrite it, and then the pin
    /// must not hold one either.
    #[must_use]
    pub fn upstream_matches(&self, original: Option<&Value>) -> bool {
        match (&self.upstream, original) {
            (None, None) => true,
            (Some(pin), Some(original)) => pin.matches(original),
            _ => false,
        }
    }

    /// Whether two pins pin the same definitions.
    #[must_use]
    pub fn same(&self, other: &Self) -> bool {
        self.sha256 == other.sha256
            && self.upstream.as_ref().map(|p| &p.sha256)
                == other.upstream.as_ref().map(|p| &p.sha256)
    }
}

/// `definition` as one canonical line: object keys sorted at every depth,
/// no whitespace, strings and numbers as `serde_json` writes them.
#[must_use]
pub fn canonical(definition: &Value) -> String {
    let mut out = String::new();
    write_canonical(definition, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            // Sorted here whichever map type `serde_json` was built with.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by_key(|(k, _)| *k);
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(scalar: &Value, out: &mut String) {
    let _ = write!(out, "{scalar}");
}

/// The SHA-256 of `definition`'s canonical form, in hex.
#[must_use]
pub fn digest(definition: &Value) -> String {
    let mut hasher = Sha256::new();
    if *MAPS_SORTED {
        // `serde_json` writes the canonical form itself: no text is built.
        let _ = serde_json::to_writer(&mut hasher, definition);
    } else {
        hasher.update(canonical(definition).as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Whether `serde_json`'s maps iterate in key order (its `preserve_order`
/// feature, which any crate in the build may turn on, is off), so that its
/// compact output is the canonical form.
static MAPS_SORTED: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
    let map: serde_json::Map<String, Value> = [
        ("b".to_string(), Value::Null),
        ("a".to_string(), Value::Null),
    ]
    .into_iter()
    .collect();
    map.keys().next().is_some_and(|k| k == "a")
});

/// `definition` pretty-printed with sorted keys, as pins store it.
#[must_use]
pub fn pretty(definition: &Value) -> String {
    let sorted: Value = serde_json::from_str(&canonical(definition)).unwrap_or(Value::Null);
    serde_json::to_string_pretty(&sorted).unwrap_or_default()
}

/// Where the lockfile of catalog `catalog` lives: `FILE.lock`.
#[must_use]
pub fn path_for(catalog: &Path) -> PathBuf {
    let mut name = catalog.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

impl Lock {
    /// Reads the lockfile at `path`: `None` when there is none.
    ///
    /// # Errors
    ///
    /// A file that cannot be read, is not a lockfile (with its line and
    /// column), has another version, or holds a pin edited by hand.
    pub fn read(path: &Path) -> Result<Option<Self>, CatalogError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => {
                return Err(CatalogError::lock(
                    path,
                    format!(
                        "cannot read the lockfile: {err}; fix: make it readable, or delete it and run `mcpgw lock`"
                    ),
                ));
            }
        };
        Self::parse(&text, path).map(Some)
    }

    /// Parses lockfile `text` read from `path`.
    ///
    /// # Errors
    ///
    /// As [`Lock::read`].
    pub fn parse(text: &str, path: &Path) -> Result<Self, CatalogError> {
        let lock: Self =
            yaml_serde::from_str(text).map_err(|err| CatalogError::from_yaml(path, &err))?;
        if lock.version != LOCK_VERSION {
            return Err(CatalogError::lock(
                path,
                format!(
                    "lockfile version {} is not {LOCK_VERSION}, the one this mcpgw reads; fix: run `mcpgw lock --update` with this mcpgw",
                    lock.version
                ),
            ));
        }
        for (server, pins) in &lock.servers {
            for (kind, name, pin) in pins.pins() {
                let edited = [Some(pin), pin.upstream.as_deref()]
                    .into_iter()
                    .flatten()
                    .any(|pin| {
                        serde_json::from_str::<Value>(&pin.definition)
                            .map_or(true, |definition| !pin.matches(&definition))
                    });
                if edited {
                    return Err(CatalogError::lock(
                        path,
                        format!(
                            "the pin of {kind} `{name}` of server `{server}` does not match its own definition: the file was edited by hand; fix: run `mcpgw lock --update` and review its diff"
                        ),
                    ));
                }
            }
        }
        Ok(lock)
    }

    /// The file's text: a header saying what it is, then sorted YAML.
    #[must_use]
    pub fn render(&self) -> String {
        let body = yaml_serde::to_string(self).unwrap_or_default();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Written by `mcpgw lock`: each server's image digest and the SHA-256 of\n# each definition it lists, as reviewed. `mcpgw run` serves only what\n# matches; `mcpgw lock --check` reports drift; `mcpgw lock --update` re-pins."
        );
        out.push_str(&body);
        out
    }
}

impl ServerLock {
    /// Every pin with the kind of item it pins (`tool`, `prompt`,
    /// `resource`, `resource template`) and its key, in file order.
    pub fn pins(&self) -> impl Iterator<Item = (&'static str, &str, &Pin)> {
        self.tools
            .iter()
            .map(|(k, p)| ("tool", k.as_str(), p))
            .chain(self.prompts.iter().map(|(k, p)| ("prompt", k.as_str(), p)))
            .chain(
                self.resources
                    .iter()
                    .map(|(k, p)| ("resource", k.as_str(), p)),
            )
            .chain(
                self.resource_templates
                    .iter()
                    .map(|(k, p)| ("resource template", k.as_str(), p)),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Lock {
        let tool = json!({"name": "get", "description": "Gets.", "inputSchema": {"type": "object", "b": 1, "a": [2, {"z": 0, "y": null}]}});
        let mut server = ServerLock {
            image: Some(format!("sha256:{}", "ab".repeat(32))),
            ..ServerLock::default()
        };
        server.tools.insert("get".into(), Pin::of(&tool));
        let shown = json!({"name": "got", "description": "Gets, renamed."});
        server
            .tools
            .insert("got".into(), Pin::rewritten(&shown, &tool));
        server.resources.insert(
            "file:///a b".into(),
            Pin::of(&json!({"uri": "file:///a b", "name": "a"})),
        );
        Lock {
            version: LOCK_VERSION,
            servers: BTreeMap::from([("s".to_string(), server)]),
        }
    }

    #[test]
    fn the_canonical_form_sorts_keys_at_every_depth_and_ignores_their_order() {
        let a = json!({"b": {"d": 1, "c": [true, {"f": "x", "e": 1.5}]}, "a": null});
        let b: Value =
            serde_json::from_str(r#"{"a":null,"b":{"c":[true,{"e":1.5,"f":"x"}],"d":1}}"#).unwrap();
        assert_eq!(
            canonical(&a),
            r#"{"a":null,"b":{"c":[true,{"e":1.5,"f":"x"}],"d":1}}"#
        );
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&json!({"a": null})));
        assert!(Pin::of(&a).matches(&b));
        // Both ways of hashing agree.
        assert_eq!(
            digest(&a),
            hex::encode(Sha256::digest(canonical(&a).as_bytes()))
        );
    }

    #[test]
    fn a_lockfile_reads_back_as_written() {
        let lock = sample();
        let text = lock.render();
        assert!(text.starts_with("# Written by `mcpgw lock`"));
        assert!(text.contains("definition: |-"), "{text}");
        assert_eq!(Lock::parse(&text, Path::new("c.yaml.lock")).unwrap(), lock);
    }

    #[test]
    fn a_pin_edited_by_hand_another_version_and_bad_yaml_are_refused() {
        let path = Path::new("c.yaml.lock");
        let text = sample().render();
        let edited = text.replacen("Gets.", "Gets, and reads ~/.ssh.", 1);
        let err = Lock::parse(&edited, path).unwrap_err().to_string();
        assert!(
            err.starts_with("c.yaml.lock: the pin of tool `get` of server `s`"),
            "{err}"
        );
        assert!(err.contains("edited by hand"), "{err}");
        // The server's own definition, beside a rewritten one, is checked too.
        let edited = text.replace("Gets.", "Gets, and reads ~/.ssh.");
        let err = Lock::parse(&edited, path).unwrap_err().to_string();
        assert!(err.contains("the pin of tool `get` of server `s`"), "{err}");
        let upstream_only = text
            .replacen("Gets.", "Gets!", 2)
            .replacen("Gets!", "Gets.", 1);
        let err = Lock::parse(&upstream_only, path).unwrap_err().to_string();
        assert!(err.contains("the pin of tool `got` of server `s`"), "{err}");

        let err = Lock::parse(&text.replace("version: 1", "version: 2"), path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("lockfile version 2 is not 1"), "{err}");

        let err = Lock::parse("version: 1\nservers:\n  s:\n    imag: x\n", path)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("c.yaml.lock:4:5: "), "{err}");
    }

    #[test]
    fn the_lockfile_sits_beside_the_catalog() {
        assert_eq!(
            path_for(Path::new("dir/catalog.yaml")),
            PathBuf::from("dir/catalog.yaml.lock")
        );
        assert_eq!(Lock::read(Path::new("/nonexistent/x.lock")).unwrap(), None);
    }
}
