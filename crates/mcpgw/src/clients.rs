//! `mcpgw client`: writes mcpgw into a desktop client's MCP configuration
//! as a stdio server (`connect`), takes it out (`disconnect`), and shows
//! where each client keeps its configuration and whether mcpgw is there
//! (`ls`).
//!
//! Every client is one row of [`CLIENTS`]: where its file lives, which key
//! holds its servers, what an entry holds and which syntax it reads. There
//! is no per-client code: the same edit (`clients/edit.rs`) serves them all.
//! It does not start or restart a client, and it does not check that the
//! client is installed: it edits the file the client reads.

mod edit;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use serde_json::json;

use crate::cli::{ClientAction, Scope};
use crate::commands::{Failure, print_stdout};
use edit::{Document, Entry, Syntax};

/// One client: a row of the table.
#[derive(Debug)]
pub(crate) struct Client {
    /// The name on the command line.
    pub(crate) id: &'static str,
    /// The name people know it by.
    title: &'static str,
    /// The user-scope file.
    user: Place,
    /// The project-scope file, relative to the current directory.
    project: Option<&'static str>,
    /// The key that holds the servers, at the top of the file.
    key: &'static str,
    /// What a stdio entry holds besides `command` and `args`.
    shape: Shape,
    syntax: Syntax,
}

/// Where a user-scope file lives.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// Under the home directory (`HOME`, on Windows `USERPROFILE`).
    Home(&'static str),
    /// Under the per-user application data directory: macOS
    /// `~/Library/Application Support`, Windows `%APPDATA%`, elsewhere
    /// `$XDG_CONFIG_HOME` (default `~/.config`).
    AppData(&'static str),
    /// Under `$XDG_CONFIG_HOME` (default `~/.config`) on every Unix,
    /// macOS included; `%APPDATA%` on Windows.
    XdgConfig(&'static str),
}

/// The keys of a stdio entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `command` and `args`.
    Plain,
    /// `"type": "stdio"`, then `command` and `args`.
    TypedStdio,
}

/// The clients mcpgw knows, and the documentation each row follows.
pub(crate) const CLIENTS: &[Client] = &[
    // https://modelcontextprotocol.io/quickstart/user (macOS and Windows
    // paths, `mcpServers` with `command` and `args`); the Linux build reads
    // ~/.config/Claude (https://mcpbundles.com/blog/claude-desktop-mcp).
    Client {
        id: "claude-desktop",
        title: "Claude Desktop",
        user: Place::AppData("Claude/claude_desktop_config.json"),
        project: None,
        key: "mcpServers",
        shape: Shape::Plain,
        syntax: Syntax::Json,
    },
    // https://code.claude.com/docs/en/mcp#mcp-installation-scopes: user
    // scope is `mcpServers` at the top of ~/.claude.json, project scope is
    // `.mcp.json` at the project root. (Its default `local` scope, under
    // `projects.<dir>` in ~/.claude.json, is not offered.)
    Client {
        id: "claude-code",
        title: "Claude Code",
        user: Place::Home(".claude.json"),
        project: Some(".mcp.json"),
        key: "mcpServers",
        shape: Shape::Plain,
        syntax: Syntax::Json,
    },
    // https://cursor.com/docs/mcp: ~/.cursor/mcp.json (global) and
    // .cursor/mcp.json (project), `mcpServers`; Cursor reads it as JSONC.
    Client {
        id: "cursor",
        title: "Cursor",
        user: Place::Home(".cursor/mcp.json"),
        project: Some(".cursor/mcp.json"),
        key: "mcpServers",
        shape: Shape::Plain,
        syntax: Syntax::Jsonc,
    },
    // https://code.visualstudio.com/docs/copilot/reference/mcp-configuration:
    // `servers`, a stdio entry needs `"type": "stdio"`; .vscode/mcp.json in
    // the workspace, or mcp.json in the user profile, which is the default
    // profile's Code/User folder (~/.config, ~/Library/Application Support
    // or %APPDATA%: https://code.visualstudio.com/docs/configure/profiles).
    Client {
        id: "vscode",
        title: "VS Code",
        user: Place::AppData("Code/User/mcp.json"),
        project: Some(".vscode/mcp.json"),
        key: "servers",
        shape: Shape::TypedStdio,
        syntax: Syntax::Jsonc,
    },
    // https://docs.windsurf.com/windsurf/cascade/mcp:
    // ~/.codeium/windsurf/mcp_config.json, `mcpServers`, `command` and
    // `args` for stdio (the JetBrains plugin's ~/.codeium/mcp_config.json
    // is another file, not written here).
    Client {
        id: "windsurf",
        title: "Windsurf",
        user: Place::Home(".codeium/windsurf/mcp_config.json"),
        project: None,
        key: "mcpServers",
        shape: Shape::Plain,
        syntax: Syntax::Json,
    },
    // https://zed.dev/docs/ai/mcp: `context_servers` in settings.json
    // (~/.config/zed on Linux and macOS), `command` and `args`; the file
    // is JSONC.
    Client {
        id: "zed",
        title: "Zed",
        user: Place::XdgConfig("zed/settings.json"),
        project: None,
        key: "context_servers",
        shape: Shape::Plain,
        syntax: Syntax::Jsonc,
    },
];

/// The names `mcpgw client` accepts, for clap.
pub(crate) fn ids() -> impl Iterator<Item = &'static str> {
    CLIENTS.iter().map(|c| c.id)
}

fn find(id: &str) -> Result<&'static Client, Failure> {
    CLIENTS.iter().find(|c| c.id == id).ok_or_else(|| {
        Failure::usage(anyhow!(
            "no client called `{id}`; fix: give one of {}",
            ids().collect::<Vec<_>>().join(", ")
        ))
    })
}

fn home() -> anyhow::Result<PathBuf> {
    let var = if cfg!(windows) { "USERPROFILE" } else { "HOME" };
    std::env::var_os(var)
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("{var} is not set; fix: set it to your home directory"))
}

fn xdg_config() -> anyhow::Result<PathBuf> {
    match std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => Ok(home()?.join(".config")),
    }
}

fn app_data() -> anyhow::Result<PathBuf> {
    std::env::var_os("APPDATA")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("APPDATA is not set; fix: set it to your roaming profile folder"))
}

/// A project-scope file: relative to the current directory, which is the
/// project's root when the client opens it there.
fn project_path(rel: &str) -> anyhow::Result<PathBuf> {
    Ok(under(
        std::env::current_dir().context("cannot read the current directory")?,
        rel,
    ))
}

impl Place {
    fn path(self) -> anyhow::Result<PathBuf> {
        let (base, rel) = match self {
            Self::Home(rel) => (home()?, rel),
            Self::AppData(rel) | Self::XdgConfig(rel) if cfg!(windows) => (app_data()?, rel),
            Self::AppData(rel) if cfg!(target_os = "macos") => {
                (home()?.join("Library").join("Application Support"), rel)
            }
            Self::AppData(rel) | Self::XdgConfig(rel) => (xdg_config()?, rel),
        };
        Ok(under(base, rel))
    }
}

/// `base` joined with the `/`-separated `rel`, one component at a time, so
/// the path uses the platform's separator.
fn under(base: PathBuf, rel: &str) -> PathBuf {
    rel.split('/').fold(base, |path, part| path.join(part))
}

impl Client {
    /// The file for `scope`.
    fn path(&self, scope: Scope) -> Result<PathBuf, Failure> {
        match (scope, self.project) {
            (Scope::User, _) => Ok(self.user.path()?),
            (Scope::Project, Some(rel)) => Ok(project_path(rel)?),
            (Scope::Project, None) => Err(Failure::usage(anyhow!(
                "{} has no project-scope configuration; fix: drop `--scope project`",
                self.title
            ))),
        }
    }

    /// Every file this client reads, with its scope.
    fn paths(&self) -> Vec<(Scope, anyhow::Result<PathBuf>)> {
        let mut paths = vec![(Scope::User, self.user.path())];
        if let Some(rel) = self.project {
            paths.push((Scope::Project, project_path(rel)));
        }
        paths
    }

    /// The entry that launches mcpgw over stdio with `catalog`.
    fn entry(&self, exe: &Path, catalog: &Path) -> Entry {
        let mut keys = Vec::new();
        if self.shape == Shape::TypedStdio {
            keys.push(("type", json!("stdio")));
        }
        keys.push(("command", json!(exe.to_string_lossy())));
        keys.push((
            "args",
            json!(["run", "--catalog", catalog.to_string_lossy()]),
        ));
        Entry(keys)
    }

    fn read(&self, path: &Path) -> anyhow::Result<Document> {
        Document::read(path, self.syntax, self.key)
    }
}

/// Runs `mcpgw client ACTION`.
pub(crate) fn command(action: ClientAction) -> Result<(), Failure> {
    match action {
        ClientAction::Connect {
            client,
            catalog,
            target,
            print,
        } => connect(
            find(&client)?,
            &catalog,
            &target.name,
            target.scope,
            Output::from(print),
        ),
        ClientAction::Disconnect {
            client,
            target,
            print,
        } => disconnect(
            find(&client)?,
            &target.name,
            target.scope,
            Output::from(print),
        ),
        ClientAction::Ls { name } => {
            ls(&name);
            Ok(())
        }
    }
}

/// Whether an edit is written or only shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Write,
    Print,
}

impl From<bool> for Output {
    fn from(print: bool) -> Self {
        if print { Self::Print } else { Self::Write }
    }
}

fn connect(
    client: &Client,
    catalog: &Path,
    name: &str,
    scope: Scope,
    output: Output,
) -> Result<(), Failure> {
    let catalog = std::fs::canonicalize(catalog).map_err(|e| {
        Failure::usage(anyhow!(
            "catalog {}: {e}; fix: give the path of your catalog YAML",
            catalog.display()
        ))
    })?;
    // A client handed a broken catalog fails at every start, far from here.
    crate::commands::load(&catalog)?;
    // Not canonicalized: a binary reached through a symlink (a package
    // manager's `bin/`) keeps working after an upgrade moves its target.
    let exe = std::env::current_exe().context("cannot find the path of this mcpgw binary")?;
    let path = client.path(scope)?;
    let doc = client.read(&path)?;
    let entry = client.entry(&exe, &catalog);
    let previous = doc.entry(name)?;
    if doc.holds(name, &entry)? {
        print_stdout(&format!(
            "already connected: `{name}` in {} runs {} with {}; nothing written\n",
            path.display(),
            exe.display(),
            catalog.display()
        ));
        return Ok(());
    }
    doc.set(name, &entry)?;
    let verb = if previous.is_some() {
        "updated"
    } else {
        "connected"
    };
    finish(client, &path, &doc, output, &format!("{verb} `{name}`"))
}

fn disconnect(client: &Client, name: &str, scope: Scope, output: Output) -> Result<(), Failure> {
    let path = client.path(scope)?;
    let doc = client.read(&path)?;
    if !doc.remove(name)? {
        let why = if doc.existed() {
            format!("{} has no server `{name}`", path.display())
        } else {
            format!("{} does not exist", path.display())
        };
        print_stdout(&format!("not connected: {why}; nothing written\n"));
        return Ok(());
    }
    finish(
        client,
        &path,
        &doc,
        output,
        &format!("disconnected `{name}`"),
    )
}

/// Prints the edited document, or writes it and says what was done.
fn finish(
    client: &Client,
    path: &Path,
    doc: &Document,
    output: Output,
    done: &str,
) -> Result<(), Failure> {
    let text = doc.text();
    if output == Output::Print {
        print_stdout(&text);
        return Ok(());
    }
    let backup = edit::write_atomically(path, &text)?;
    let kept = backup.map_or_else(String::new, |b| {
        format!(" (the previous file is {})", b.display())
    });
    print_stdout(&format!(
        "{done}: {}{kept}; restart {} to load it\n",
        path.display(),
        client.title
    ));
    Ok(())
}

fn ls(name: &str) {
    let mut rows = Vec::new();
    for client in CLIENTS {
        for (scope, path) in client.paths() {
            let scope = match scope {
                Scope::User => "user",
                Scope::Project => "project",
            };
            let (file, exists, state) = match path {
                Ok(path) => {
                    let exists = path.exists();
                    let state = if exists {
                        match client.read(&path).and_then(|doc| doc.entry(name)) {
                            Ok(Some(_)) => "connected".to_string(),
                            Ok(None) => "not connected".to_string(),
                            Err(err) => format!("unreadable: {err:#}"),
                        }
                    } else {
                        "not connected".to_string()
                    };
                    let exists = if exists { "yes" } else { "no" };
                    (path.display().to_string(), exists, state)
                }
                Err(err) => (format!("({err:#})"), "no", "not connected".to_string()),
            };
            rows.push((client.id, scope, file, exists, state));
        }
    }
    let width = rows.iter().map(|r| r.2.len()).max().unwrap_or(4).max(4);
    let mut out = format!(
        "{:<14}  {:<7}  {:<width$}  {:<6}  `{name}`\n",
        "CLIENT", "SCOPE", "FILE", "EXISTS"
    );
    for (id, scope, file, exists, state) in rows {
        out.push_str(&format!(
            "{id:<14}  {scope:<7}  {file:<width$}  {exists:<6}  {state}\n"
        ));
    }
    print_stdout(&out);
}
