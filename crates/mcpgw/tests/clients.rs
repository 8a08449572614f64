//! `mcpgw client` end to end: the real binary edits each client's config
//! file, from fixtures that hold other servers, other keys and (where the
//! format has them) comments, in a temporary home and project directory, so
//! nothing touches the real home.
//!
//! For every client and scope: the result parses and holds the entry; every
//! line of the fixture survives (one may gain the comma that separates it
//! from the new entry); the previous file is kept as `FILE.bak`; its mode is
//! kept; a second connect writes nothing (bytes and mtime unchanged);
//! `disconnect` gives back the fixture byte for byte; a file that does not
//! parse is left untouched and the error names its line and column. It does
//! not start a client.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};

/// One client and scope, its fixture and where the client reads it.
struct Case {
    client: &'static str,
    scope: &'static str,
    fixture: &'static str,
    /// The file, relative to the temporary root: `home/`, `xdg/` (the
    /// `XDG_CONFIG_HOME`) or `project/` (the current directory).
    file: &'static str,
    key: &'static str,
    typed: bool,
}

const CASES: &[Case] = &[
    Case {
        client: "claude-desktop",
        scope: "user",
        fixture: "claude-desktop.json",
        file: "xdg/Claude/claude_desktop_config.json",
        key: "mcpServers",
        typed: false,
    },
    Case {
        client: "claude-code",
        scope: "user",
        fixture: "claude-code-user.json",
        file: "home/.claude.json",
        key: "mcpServers",
        typed: false,
    },
    Case {
        client: "claude-code",
        scope: "project",
        fixture: "claude-code-project.json",
        file: "project/.mcp.json",
        key: "mcpServers",
        typed: false,
    },
    Case {
        client: "cursor",
        scope: "user",
        fixture: "cursor.json",
        file: "home/.cursor/mcp.json",
        key: "mcpServers",
        typed: false,
    },
    Case {
        client: "cursor",
        scope: "project",
        fixture: "cursor-project.json",
        file: "project/.cursor/mcp.json",
        key: "mcpServers",
        typed: false,
    },
    Case {
        client: "vscode",
        scope: "user",
        fixture: "vscode-user.jsonc",
        file: "xdg/Code/User/mcp.json",
        key: "servers",
        typed: true,
    },
    Case {
        client: "vscode",
        scope: "project",
        fixture: "vscode-project.jsonc",
        file: "project/.vscode/mcp.json",
        key: "servers",
        typed: true,
    },
    Case {
        client: "windsurf",
        scope: "user",
        fixture: "windsurf.json",
        file: "home/.codeium/windsurf/mcp_config.json",
        key: "mcpServers",
        typed: false,
    },
    Case {
        client: "zed",
        scope: "user",
        fixture: "zed.jsonc",
        file: "xdg/zed/settings.json",
        key: "context_servers",
        typed: false,
    },
];

/// A temporary home, config home, project directory and catalog.
struct World {
    root: tempfile::TempDir,
}

impl World {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        for dir in ["home", "xdg", "appdata", "project"] {
            std::fs::create_dir(root.path().join(dir)).unwrap();
        }
        std::fs::write(
            root.path().join("catalog.yaml"),
            "version: 1\nservers:\n  time:\n    image: mcpgw/time:dev\n",
        )
        .unwrap();
        Self { root }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    fn catalog(&self) -> PathBuf {
        self.path("catalog.yaml").canonicalize().unwrap()
    }

    /// Runs mcpgw with `args` in the project directory.
    fn mcpgw(&self, args: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_mcpgw"))
            .args(args)
            .current_dir(self.path("project"))
            .env("HOME", self.path("home"))
            .env("USERPROFILE", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("xdg"))
            .env("APPDATA", self.path("appdata"))
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    }

    fn connect(&self, case: &Case, extra: &[&str]) -> Output {
        let catalog = self.path("catalog.yaml");
        let mut args = vec![
            "client",
            "connect",
            case.client,
            "--catalog",
            catalog.to_str().unwrap(),
            "--scope",
            case.scope,
        ];
        args.extend_from_slice(extra);
        self.mcpgw(&args)
    }

    fn disconnect(&self, case: &Case) -> Output {
        self.mcpgw(&["client", "disconnect", case.client, "--scope", case.scope])
    }

    /// Puts the case's fixture where its client reads it.
    fn place(&self, case: &Case) -> (PathBuf, String) {
        let text = fixture(case.fixture);
        let path = self.path(case.file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
        (path, text)
    }
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/clients")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "mcpgw failed ({}):\n{}{}",
        out.status,
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// Parses JSON or JSONC, as the clients do.
fn parse(text: &str) -> Value {
    jsonc_parser::cst::CstRootNode::parse(text, &jsonc_parser::ParseOptions::default())
        .unwrap_or_else(|e| panic!("the result does not parse: {e}\n{text}"))
        .to_serde_value()
        .unwrap()
}

fn binary() -> String {
    Path::new(env!("CARGO_BIN_EXE_mcpgw"))
        .canonicalize()
        .unwrap()
        .display()
        .to_string()
}

fn expected_entry(world: &World, case: &Case) -> Value {
    let mut entry = json!({
        "command": binary(),
        "args": ["run", "--catalog", world.catalog().display().to_string()],
    });
    if case.typed {
        entry["type"] = json!("stdio");
    }
    entry
}

/// Every line of `before` is in `after`, in order, byte for byte; a line
/// may gain the comma that separates it from what was appended after it.
fn lines_survive(before: &str, after: &str) {
    let mut after_lines = after.lines();
    for line in before.lines() {
        let (code, comment) = split_comment(line);
        let with_comma = format!("{code},{comment}");
        let kept = after_lines.any(|l| l == line || l == with_comma);
        assert!(
            kept,
            "line {line:?} of the fixture is missing or changed:\n{after}"
        );
    }
}

/// Splits a line before a trailing `//` comment (none in a string here).
fn split_comment(line: &str) -> (&str, &str) {
    match line.find(" //") {
        Some(at) => (&line[..at], &line[at..]),
        None => (line, ""),
    }
}

fn mtime(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn connect_keeps_everything_else_and_disconnect_gives_it_back() {
    for case in CASES {
        let world = World::new();
        let (path, before) = world.place(case);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();

        let out = ok(&world.connect(case, &[]));
        assert!(
            out.starts_with("connected `mcpgw`"),
            "{}: {out}",
            case.client
        );
        let after = std::fs::read_to_string(&path).unwrap();
        let parsed = parse(&after);
        assert_eq!(
            parsed[case.key]["mcpgw"],
            expected_entry(&world, case),
            "{}: the entry\n{after}",
            case.client
        );
        let mut without = parsed.clone();
        without[case.key].as_object_mut().unwrap().remove("mcpgw");
        assert_eq!(without, parse(&before), "{}: the rest", case.client);
        lines_survive(&before, &after);
        let mut backup = path.clone().into_os_string();
        backup.push(".bak");
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), before);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "{}: the mode is kept", case.client);

        // Twice changes nothing: no write at all.
        let written = mtime(&path);
        std::fs::remove_file(&backup).unwrap();
        let out = ok(&world.connect(case, &[]));
        assert!(
            out.starts_with("already connected"),
            "{}: {out}",
            case.client
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), after);
        assert_eq!(mtime(&path), written, "{}: mtime", case.client);
        assert!(!Path::new(&backup).exists(), "{}: no backup", case.client);

        let out = ok(&world.disconnect(case));
        assert!(
            out.starts_with("disconnected `mcpgw`"),
            "{}: {out}",
            case.client
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            before,
            "{}: disconnect restores the file byte for byte",
            case.client
        );
        let out = ok(&world.disconnect(case));
        assert!(out.starts_with("not connected"), "{}: {out}", case.client);
    }
}

#[test]
fn a_file_that_does_not_parse_is_left_untouched_with_its_position() {
    // `]` where a key should be, at line 2, column 18, for every parser.
    let broken = "{\n  \"mcpServers\": {]\n}\n";
    for case in CASES {
        let world = World::new();
        let path = world.path(case.file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, broken).unwrap();
        let out = world.connect(case, &[]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: {}",
            case.client,
            stderr(&out)
        );
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{}:2:18: ", path.display())),
            "{}: {err}",
            case.client
        );
        assert!(err.contains("fix:"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);
        let mut backup = path.clone().into_os_string();
        backup.push(".bak");
        assert!(!Path::new(&backup).exists());
    }
}

#[test]
fn a_comment_in_a_plain_json_file_is_refused_not_dropped() {
    // These clients read strict JSON; the JSONC ones keep comments (above).
    let strict = ["claude-desktop", "claude-code", "windsurf"];
    for case in CASES.iter().filter(|c| strict.contains(&c.client)) {
        let world = World::new();
        let path = world.path(case.file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let text = format!("{{\n  // mine\n  \"{}\": {{}}\n}}\n", case.key);
        std::fs::write(&path, &text).unwrap();
        let out = world.connect(case, &[]);
        assert_eq!(out.status.code(), Some(1), "{}", case.client);
        let err = stderr(&out);
        assert!(err.contains(&format!("{}:2:3: ", path.display())), "{err}");
        assert!(err.contains("a comment or a trailing comma"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }
}

#[test]
fn a_missing_file_and_directory_are_created() {
    for case in CASES {
        let world = World::new();
        let path = world.path(case.file);
        ok(&world.connect(case, &[]));
        let parsed = parse(&std::fs::read_to_string(&path).unwrap());
        assert_eq!(
            parsed,
            json!({ (case.key): { "mcpgw": expected_entry(&world, case) } }),
            "{}",
            case.client
        );
    }
}

#[test]
fn print_shows_the_file_and_writes_nothing() {
    let world = World::new();
    let case = &CASES[6];
    let (path, before) = world.place(case);
    let out = ok(&world.connect(case, &["--print"]));
    assert_eq!(parse(&out)[case.key]["mcpgw"], expected_entry(&world, case));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    let mut backup = path.clone().into_os_string();
    backup.push(".bak");
    assert!(!Path::new(&backup).exists());

    // And the other way: connected, `disconnect --print` shows the file
    // without the entry, and leaves the entry where it is.
    ok(&world.connect(case, &[]));
    let connected = std::fs::read_to_string(&path).unwrap();
    let out = ok(&world.mcpgw(&[
        "client",
        "disconnect",
        case.client,
        "--scope",
        case.scope,
        "--print",
    ]));
    assert_eq!(out, before);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), connected);
}

#[test]
fn the_written_entry_launches_this_mcpgw_with_the_catalog() {
    let world = World::new();
    let case = &CASES[1];
    ok(&world.connect(case, &["--name", "gw"]));
    let parsed = parse(&std::fs::read_to_string(world.path(case.file)).unwrap());
    let entry = &parsed[case.key]["gw"];
    let command = entry["command"].as_str().unwrap();
    let args: Vec<&str> = entry["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(command, binary());
    assert!(Path::new(command).is_absolute());
    let catalog = world.catalog().display().to_string();
    assert_eq!(args, ["run", "--catalog", catalog.as_str()]);
    // The same command and catalog, asked to check the catalog rather than
    // serve it (serving needs an engine): it starts and finds the file.
    let out = std::process::Command::new(command)
        .arg("validate")
        .args(&args[1..])
        .current_dir("/")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("valid, 1 server(s)"));
}

#[test]
fn ls_shows_each_file_and_whether_mcpgw_is_in_it() {
    let world = World::new();
    let out = ok(&world.mcpgw(&["client", "ls"]));
    for case in CASES {
        let path = world.path(case.file);
        let line = out
            .lines()
            .find(|l| l.contains(&path.display().to_string()))
            .unwrap_or_else(|| panic!("{} missing:\n{out}", case.file));
        assert!(line.starts_with(case.client), "{line}");
        assert!(line.contains(case.scope), "{line}");
        assert!(
            line.ends_with("no  not connected") || line.contains(" no "),
            "{line}"
        );
    }
    ok(&world.connect(&CASES[3], &[]));
    let out = ok(&world.mcpgw(&["client", "ls"]));
    let path = world.path(CASES[3].file).display().to_string();
    let line = out.lines().find(|l| l.contains(&path)).unwrap();
    assert!(line.contains(" yes "), "{line}");
    assert!(
        line.ends_with(" connected") && !line.ends_with("not connected"),
        "{line}"
    );
}

#[test]
fn a_client_without_project_scope_says_so() {
    let world = World::new();
    let catalog = world.path("catalog.yaml").display().to_string();
    let out = world.mcpgw(&[
        "client",
        "connect",
        "claude-desktop",
        "--catalog",
        &catalog,
        "--scope",
        "project",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no project-scope"),
        "{}",
        stderr(&out)
    );
    let out = world.mcpgw(&["client", "connect", "emacs", "--catalog", "x.yaml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_missing_catalog_is_a_usage_error_and_writes_nothing() {
    let world = World::new();
    let out = world.mcpgw(&["client", "connect", "cursor", "--catalog", "nope.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("fix:"), "{}", stderr(&out));
    assert!(!world.path(CASES[3].file).exists());
}

#[test]
fn connecting_with_another_catalog_updates_the_entry_in_place() {
    let world = World::new();
    let case = &CASES[8];
    let (path, before) = world.place(case);
    ok(&world.connect(case, &[]));
    let other = world.path("project/other.yaml");
    std::fs::copy(world.path("catalog.yaml"), &other).unwrap();
    let out = ok(&world.mcpgw(&["client", "connect", case.client, "--catalog", "other.yaml"]));
    assert!(out.starts_with("updated `mcpgw`"), "{out}");
    let after = std::fs::read_to_string(&path).unwrap();
    assert_eq!(after.matches("\"mcpgw\"").count(), 1, "{after}");
    let parsed = parse(&after);
    let other = other.canonicalize().unwrap().display().to_string();
    assert_eq!(
        parsed[case.key]["mcpgw"]["args"],
        json!(["run", "--catalog", other])
    );
    lines_survive(&before, &after);
}

#[test]
fn a_symlinked_file_is_replaced_behind_its_link() {
    // Dotfile managers link ~/.cursor/mcp.json into a repository: the link
    // stays, the file it points to is edited, and its backup sits beside it.
    let world = World::new();
    let case = &CASES[3];
    let real = world.path("dotfiles/mcp.json");
    std::fs::create_dir_all(real.parent().unwrap()).unwrap();
    let before = fixture(case.fixture);
    std::fs::write(&real, &before).unwrap();
    let link = world.path(case.file);
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    ok(&world.connect(case, &[]));
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let after = std::fs::read_to_string(&real).unwrap();
    assert_eq!(
        parse(&after)[case.key]["mcpgw"],
        expected_entry(&world, case)
    );
    assert_eq!(
        std::fs::read_to_string(world.path("dotfiles/mcp.json.bak")).unwrap(),
        before
    );
}
