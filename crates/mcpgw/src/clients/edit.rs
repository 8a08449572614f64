//! One MCP client's config file, edited in place: parse it (JSON, or JSONC
//! with comments and trailing commas) into a concrete syntax tree, add,
//! replace or remove one server entry under the servers key, and write it
//! back atomically with a backup.
//!
//! The tree is `jsonc-parser`'s CST, which keeps every comment, blank line
//! and key order, so what the edit does not touch comes back byte for byte;
//! plain JSON goes through the same tree (a subset of JSONC), so there is
//! one edit mechanism and serde_json's map order is never involved. It does
//! not know which client a file belongs to: the table in `clients.rs` says
//! where the file is, which key holds the servers and what an entry holds.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use jsonc_parser::ParseOptions;
use jsonc_parser::cst::{CstInputValue, CstObject, CstObjectProp, CstRootNode};
use serde_json::Value;

/// What a client's parser accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    /// Strict JSON: a comment or a trailing comma is an error, as it would
    /// be for the client.
    Json,
    /// JSON with comments and trailing commas, as VS Code's and Zed's
    /// settings files are.
    Jsonc,
}

/// A server entry, its keys in the order they are written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry(pub(crate) Vec<(&'static str, Value)>);

impl Entry {
    /// The entry as a JSON value, to compare with what a file holds.
    #[cfg(test)]
    pub(crate) fn value(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| ((*k).to_string(), v.clone()))
                .collect(),
        )
    }

    fn input(&self) -> CstInputValue {
        CstInputValue::Object(
            self.0
                .iter()
                .map(|(k, v)| ((*k).to_string(), input(v)))
                .collect(),
        )
    }
}

fn input(value: &Value) -> CstInputValue {
    match value {
        Value::Null => CstInputValue::Null,
        Value::Bool(b) => CstInputValue::Bool(*b),
        Value::Number(n) => CstInputValue::Number(n.to_string()),
        Value::String(s) => CstInputValue::String(s.clone()),
        Value::Array(items) => CstInputValue::Array(items.iter().map(input).collect()),
        Value::Object(map) => {
            CstInputValue::Object(map.iter().map(|(k, v)| (k.clone(), input(v))).collect())
        }
    }
}

/// A config file as read, and the edits made to it so far.
#[derive(Debug)]
pub(crate) struct Document {
    path: PathBuf,
    root: CstRootNode,
    /// The servers key, such as `mcpServers`.
    key: &'static str,
    /// Whether the file existed.
    existed: bool,
    /// Whether the text ends with a newline, or there was none: what is
    /// written ends the same way.
    final_newline: bool,
}

impl Document {
    /// Reads and parses `path`; a missing file is an empty document. A file
    /// that does not parse is an error naming its line and column.
    pub(crate) fn read(path: &Path, syntax: Syntax, key: &'static str) -> anyhow::Result<Self> {
        let (text, existed) = match std::fs::read_to_string(path) {
            Ok(text) => (text, true),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => (String::new(), false),
            Err(err) => {
                return Err(anyhow!(err)).with_context(|| {
                    format!(
                        "cannot read {}; fix: make it a readable UTF-8 file",
                        path.display()
                    )
                });
            }
        };
        let at = |line: usize, column: usize, cause: &dyn std::fmt::Display| {
            anyhow!(
                "{}:{line}:{column}: {cause}; the file is left as it was; fix: correct it there, or move it aside to start a new one",
                path.display(),
            )
        };
        // The CST parser collects comments whatever its options say, so
        // strict JSON is checked by serde_json first, as the client's own
        // JSON parser would.
        if syntax == Syntax::Json && !text.trim().is_empty() {
            serde_json::from_str::<serde::de::IgnoredAny>(&text).map_err(|err| {
                let message = err.to_string();
                let cause = if CstRootNode::parse(&text, &ParseOptions::default()).is_ok() {
                    "a comment or a trailing comma, which this client's plain JSON does not allow"
                } else {
                    message
                        .rsplit_once(" at line ")
                        .map_or(message.as_str(), |(cause, _)| cause)
                };
                at(err.line(), err.column(), &cause)
            })?;
        }
        let root = CstRootNode::parse(&text, &ParseOptions::default())
            .map_err(|err| at(err.line_display(), err.column_display(), err.kind()))?;
        if let Some(value) = root.value()
            && value.as_object().is_none()
        {
            bail!(
                "{} does not hold a JSON object at its top; the file is left as it was; fix: make it `{{}}`, or move it aside",
                path.display()
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            root,
            key,
            existed,
            final_newline: text.trim().is_empty() || text.ends_with('\n'),
        })
    }

    pub(crate) fn existed(&self) -> bool {
        self.existed
    }

    /// The servers object, if the file has one; an error if the key holds
    /// something else.
    fn servers(&self) -> anyhow::Result<Option<CstObject>> {
        let Some(root) = self.root.object_value() else {
            return Ok(None);
        };
        let Some(prop) = root.get(self.key) else {
            return Ok(None);
        };
        match prop.value().and_then(|v| v.as_object()) {
            Some(servers) => Ok(Some(servers)),
            None => bail!(
                "`{}` in {} is not an object of servers; the file is left as it was; fix: make it `{{}}` there",
                self.key,
                self.path.display()
            ),
        }
    }

    /// The entry named `name`, as JSON.
    pub(crate) fn entry(&self, name: &str) -> anyhow::Result<Option<Value>> {
        Ok(self
            .servers()?
            .and_then(|servers| servers.get(name))
            .and_then(|prop| prop.value())
            .and_then(|value| value.to_serde_value()))
    }

    /// Whether the entry `name` holds every key of `entry` with its value
    /// (keys the user added to it besides, such as `env`, are theirs).
    pub(crate) fn holds(&self, name: &str, entry: &Entry) -> anyhow::Result<bool> {
        let Some(Value::Object(present)) = self.entry(name)? else {
            return Ok(false);
        };
        Ok(entry.0.iter().all(|(k, v)| present.get(*k) == Some(v)))
    }

    /// Adds the entry `name`, or sets its keys in the one there (keeping
    /// the others), leaving every other byte of the file as it was.
    pub(crate) fn set(&self, name: &str, entry: &Entry) -> anyhow::Result<()> {
        let servers = match self.servers()? {
            Some(servers) => servers,
            None => self
                .root
                .object_value_or_set()
                .object_value_or_create(self.key)
                .ok_or_else(|| anyhow!("cannot add `{}` to {}", self.key, self.path.display()))?,
        };
        let existing = servers.get(name);
        match existing
            .as_ref()
            .and_then(CstObjectProp::value)
            .and_then(|v| v.as_object())
        {
            Some(object) => {
                for (key, value) in &entry.0 {
                    match object.get(key) {
                        Some(prop) => prop.set_value(input(value)),
                        None => {
                            object.append(key, input(value));
                        }
                    }
                }
            }
            None => match existing {
                Some(prop) => prop.set_value(entry.input()),
                None => {
                    servers.append(name, entry.input());
                }
            },
        }
        Ok(())
    }

    /// Removes the entry `name`; false when there is none.
    pub(crate) fn remove(&self, name: &str) -> anyhow::Result<bool> {
        let Some(prop) = self.servers()?.and_then(|servers| servers.get(name)) else {
            return Ok(false);
        };
        prop.remove();
        Ok(true)
    }

    /// The text of the document with its edits.
    pub(crate) fn text(&self) -> String {
        let mut text = self.root.to_string();
        if self.final_newline && !text.ends_with('\n') {
            text.push('\n');
        }
        text
    }
}

/// Writes `text` to `path` atomically: a temporary file in the same
/// directory, with the mode of the file it replaces, renamed over it, so a
/// reader sees the old file or the new one, never half of one. The old file
/// is first copied to `FILE.bak`, whose path is returned. A missing
/// directory is created; a symlink is followed, so the file it points to is
/// replaced and the link kept.
pub(crate) fn write_atomically(path: &Path, text: &str) -> anyhow::Result<Option<PathBuf>> {
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create {}; fix: create it, or check its parent's permissions",
            dir.display()
        )
    })?;
    let cannot = || {
        format!(
            "cannot write {}; fix: check the permissions of {}",
            target.display(),
            dir.display()
        )
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".mcpgw-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(cannot)?;
    tmp.write_all(text.as_bytes()).with_context(cannot)?;
    let backup = match std::fs::metadata(&target) {
        Ok(meta) => {
            std::fs::set_permissions(tmp.path(), meta.permissions()).with_context(cannot)?;
            let mut backup = target.clone().into_os_string();
            backup.push(".bak");
            let backup = PathBuf::from(backup);
            std::fs::copy(&target, &backup).with_context(|| {
                format!(
                    "cannot back {} up to {}; nothing was written; fix: check the permissions of {}",
                    target.display(),
                    backup.display(),
                    dir.display()
                )
            })?;
            Some(backup)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(anyhow!(err)).with_context(cannot),
    };
    tmp.as_file().sync_all().with_context(cannot)?;
    tmp.persist(&target)
        .map_err(|e| anyhow!(e.error))
        .with_context(cannot)?;
    Ok(backup)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry() -> Entry {
        Entry(vec![
            ("command", json!("/bin/mcpgw")),
            ("args", json!(["run", "--catalog", "/c.yaml"])),
        ])
    }

    /// Sets the entry in `input` and checks the text, then removes it and
    /// checks that `input` comes back.
    fn check(syntax: Syntax, input: &str, expect: &str) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(&path, input).unwrap();
        let doc = Document::read(&path, syntax, "mcpServers").unwrap();
        doc.set("mcpgw", &entry()).unwrap();
        assert_eq!(doc.text(), expect);
        assert_eq!(
            doc.entry("mcpgw").unwrap(),
            Some(entry().value()),
            "the entry reads back"
        );
        assert!(doc.remove("mcpgw").unwrap());
        assert_eq!(doc.text(), input, "removing it restores the file");
    }

    #[test]
    fn appends_after_the_other_servers_keeping_comments() {
        check(
            Syntax::Jsonc,
            "{\n  // mine\n  \"mcpServers\": {\n    \"a\": { \"command\": \"a\" } // keep\n  },\n  \"z\": 1\n}\n",
            "{\n  // mine\n  \"mcpServers\": {\n    \"a\": { \"command\": \"a\" }, // keep\n    \"mcpgw\": {\n      \"command\": \"/bin/mcpgw\",\n      \"args\": [\"run\", \"--catalog\", \"/c.yaml\"]\n    }\n  },\n  \"z\": 1\n}\n",
        );
    }

    #[test]
    fn strict_json_keeps_key_order() {
        check(
            Syntax::Json,
            "{\n\t\"z\": 1,\n\t\"mcpServers\": {\n\t\t\"b\": {},\n\t\t\"a\": {}\n\t},\n\t\"a\": 2\n}",
            "{\n\t\"z\": 1,\n\t\"mcpServers\": {\n\t\t\"b\": {},\n\t\t\"a\": {},\n\t\t\"mcpgw\": {\n\t\t\t\"command\": \"/bin/mcpgw\",\n\t\t\t\"args\": [\"run\", \"--catalog\", \"/c.yaml\"]\n\t\t}\n\t},\n\t\"a\": 2\n}",
        );
    }

    #[test]
    fn windows_line_endings_are_kept() {
        check(
            Syntax::Json,
            "{\r\n  \"mcpServers\": {\r\n    \"a\": {}\r\n  }\r\n}\r\n",
            "{\r\n  \"mcpServers\": {\r\n    \"a\": {},\r\n    \"mcpgw\": {\r\n      \"command\": \"/bin/mcpgw\",\r\n      \"args\": [\"run\", \"--catalog\", \"/c.yaml\"]\r\n    }\r\n  }\r\n}\r\n",
        );
    }

    #[test]
    fn a_one_line_file_stays_valid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(&path, r#"{"z":1,"mcpServers":{"b":{}},"a":2}"#).unwrap();
        let doc = Document::read(&path, Syntax::Json, "mcpServers").unwrap();
        doc.set("mcpgw", &entry()).unwrap();
        let parsed: Value = serde_json::from_str(&doc.text()).unwrap();
        assert_eq!(
            parsed,
            json!({ "z": 1, "mcpServers": { "b": {}, "mcpgw": entry().value() }, "a": 2 })
        );
    }

    #[test]
    fn an_update_keeps_the_keys_the_user_added() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let before = "{\n  \"mcpServers\": {\n    \"mcpgw\": {\n      \"command\": \"/old/mcpgw\",\n      \"env\": { \"MCPGW_LOG\": \"debug\" }\n    }\n  }\n}\n";
        std::fs::write(&path, before).unwrap();
        let doc = Document::read(&path, Syntax::Json, "mcpServers").unwrap();
        assert!(!doc.holds("mcpgw", &entry()).unwrap());
        doc.set("mcpgw", &entry()).unwrap();
        assert!(doc.holds("mcpgw", &entry()).unwrap());
        assert_eq!(
            doc.text(),
            "{\n  \"mcpServers\": {\n    \"mcpgw\": {\n      \"command\": \"/bin/mcpgw\",\n      \"env\": { \"MCPGW_LOG\": \"debug\" },\n      \"args\": [\"run\", \"--catalog\", \"/c.yaml\"]\n    }\n  }\n}\n"
        );
    }

    #[test]
    fn a_new_file_gets_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let doc = Document::read(&dir.path().join("none.json"), Syntax::Json, "servers").unwrap();
        assert!(!doc.existed());
        doc.set("mcpgw", &entry()).unwrap();
        let text = doc.text();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, json!({ "servers": { "mcpgw": entry().value() } }));
    }

    #[test]
    fn a_comment_in_strict_json_is_an_error_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(&path, "{\n  // no\n}\n").unwrap();
        let err = Document::read(&path, Syntax::Json, "mcpServers").unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}:2:3: ", path.display())),
            "{err}"
        );
    }

    #[test]
    fn a_servers_key_that_is_no_object_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(&path, "{\"mcpServers\": []}").unwrap();
        let doc = Document::read(&path, Syntax::Json, "mcpServers").unwrap();
        assert!(doc.set("mcpgw", &entry()).is_err());
    }
}
