//! Secrets at the edge of a run: resolving a catalog's secrets before any
//! container starts, building each container's injection, and the
//! `mcpgw secret` commands.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{IsTerminal as _, Read as _};
use std::path::Path;
use std::sync::Arc;

use anyhow::anyhow;
use mcpgw_catalog::{Catalog, Delivery, SecretName, ServerSpec};
use mcpgw_secrets::store::{Keyring, StoreKind};
use mcpgw_secrets::{
    ExposeSecret, Injection, LiveRedactor, Redactor, SecretString, Source, Sources, Values,
    env_var_for,
};

use crate::cli::{SecretAction, SecretsArg, Store, StoreArg};
use crate::commands::{Failure, load, print_stdout};

/// The values a run's servers receive.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resolved {
    values: Arc<Values>,
}

impl Resolved {
    /// Makes this run's redactor the live one that logs, panic messages,
    /// clients' messages and the mux's checks go through; a reload
    /// replaces what it finds.
    pub(crate) fn install(&self) -> LiveRedactor {
        let live = LiveRedactor::new(self.redactor_with(&[]));
        mcpgw_secrets::set_global(live.clone());
        live
    }

    /// A redactor for these values and `also` (values no catalog in force
    /// uses any more, which logs and answers may still hold).
    pub(crate) fn redactor_with(&self, also: &[(String, SecretString)]) -> Redactor {
        let current = self.values.iter().map(|(n, v)| (n.as_str(), v));
        Redactor::new(current.chain(also.iter().map(|(n, v)| (n.as_str(), v))))
    }

    /// The values `retired` holds and those of this run that `newer` does
    /// not have (by name and value): what stays redacted once `newer` is
    /// in force.
    pub(crate) fn dropped_by(
        &self,
        newer: &Self,
        retired: &[(String, SecretString)],
    ) -> Vec<(String, SecretString)> {
        let kept = |name: &str, value: &SecretString| {
            newer
                .values
                .get(name)
                .is_some_and(|v| v.expose_secret() == value.expose_secret())
        };
        retired
            .iter()
            .map(|(n, v)| (n.as_str(), v))
            .chain(self.values.iter().map(|(n, v)| (n.as_str(), v)))
            .filter(|(n, v)| !kept(n, v))
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect()
    }

    /// Whether `name` has the same value here as in `other`.
    pub(crate) fn same_value(&self, other: &Self, name: &str) -> bool {
        match (self.values.get(name), other.values.get(name)) {
            (Some(a), Some(b)) => a.expose_secret() == b.expose_secret(),
            (None, None) => true,
            _ => false,
        }
    }

    /// What `spec`'s container receives: only the secrets it declares.
    pub(crate) fn injection(&self, spec: &ServerSpec) -> Injection {
        let mut injection = Injection::default();
        for (var, secret) in &spec.secrets {
            let name = secret.name.as_str();
            let Some(value) = self.values.get(name) else {
                continue;
            };
            match secret.delivery {
                Delivery::Env => injection.env.push((var.clone(), value.clone())),
                Delivery::File => {
                    if !injection.files.iter().any(|(n, _)| n == name) {
                        injection.files.push((name.to_string(), value.clone()));
                    }
                }
            }
        }
        if let Some(remote) = &spec.remote {
            for name in remote.secret_names() {
                if let Some(value) = self.values.get(name.as_str())
                    && !injection.named.iter().any(|(n, _)| n == name.as_str())
                {
                    injection.named.push((name.to_string(), value.clone()));
                }
            }
        }
        injection
    }
}

fn parse_sources(arg: &SecretsArg) -> Result<Sources, Failure> {
    arg.sources.parse().map_err(Failure::usage)
}

/// The names of the secrets `spec` uses: injected into its container, or
/// in a remote server's credentials.
pub(crate) fn names_used(spec: &ServerSpec) -> Vec<String> {
    let mut names: Vec<String> = spec.secrets.values().map(|s| s.name.to_string()).collect();
    if let Some(remote) = &spec.remote {
        names.extend(remote.secret_names().iter().map(ToString::to_string));
    }
    names
}

/// Which servers (by name) and variables use each secret.
fn users(catalog: &Catalog, only: Option<&[usize]>) -> BTreeMap<String, Vec<String>> {
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (index, server) in catalog.servers.iter().enumerate() {
        if only.is_some_and(|o| !o.contains(&index)) {
            continue;
        }
        for (var, secret) in &server.secrets {
            users
                .entry(secret.name.to_string())
                .or_default()
                .push(format!("`{}` (as {var})", server.name));
        }
        if let Some(remote) = &server.remote {
            for name in remote.secret_names() {
                users
                    .entry(name.to_string())
                    .or_default()
                    .push(format!("`{}` (for its remote credentials)", server.name));
            }
        }
    }
    users
}

/// Resolves every secret the selected servers declare. A secret no source
/// has stops the run with exit code 2 before any container starts; the
/// message lists each missing secret, who needs it and how to set it.
pub(crate) async fn resolve(
    catalog: &Catalog,
    only: Option<&[usize]>,
    arg: &SecretsArg,
) -> Result<Resolved, Failure> {
    let users = users(catalog, only);
    if users.is_empty() {
        return Ok(Resolved::default());
    }
    let sources = parse_sources(arg)?;
    let names: BTreeSet<String> = users.keys().cloned().collect();
    let resolution = sources.resolve(&names).await;
    if !resolution.missing.is_empty() {
        let mut message = format!(
            "{} secret(s) missing from every source ({sources}); nothing was started:",
            resolution.missing.len()
        );
        for missing in &resolution.missing {
            let needed_by = users
                .get(&missing.name)
                .map_or(String::new(), |u| u.join(", "));
            let _ = write!(
                message,
                "\n  - `{}`, needed by server {needed_by}; fix: {}",
                missing.name,
                how_to_set(&sources, &missing.name)
            );
            for note in &missing.notes {
                let _ = write!(message, "\n      ({note})");
            }
        }
        return Err(Failure::usage(anyhow!(message)));
    }
    tracing::info!(
        secrets = resolution.values.len(),
        %sources,
        "secrets resolved; their values are redacted from logs and client messages"
    );
    Ok(Resolved {
        values: Arc::new(resolution.values),
    })
}

/// The ways to supply `name` with the configured sources.
fn how_to_set(sources: &Sources, name: &str) -> String {
    let ways: Vec<String> = sources
        .list()
        .iter()
        .map(|source| match source {
            Source::Keyring(StoreKind::Native) => format!("run `mcpgw secret set {name}`"),
            Source::Keyring(StoreKind::Keyutils) => {
                format!("run `mcpgw secret set --store keyutils {name}`")
            }
            Source::Env => format!("export {}", env_var_for(name)),
            Source::Dir(dir) => format!("write the value to {}", dir.join(name).display()),
        })
        .collect();
    ways.join(", or ")
}

/// `mcpgw secret set|ls|rm`.
pub(crate) async fn command(action: SecretAction) -> Result<(), Failure> {
    match action {
        SecretAction::Set { name, store } => set(&name, &store).await,
        SecretAction::Rm { name, store } => rm(&name, &store).await,
        SecretAction::Ls {
            catalog,
            store,
            secrets,
        } => ls(catalog.as_deref(), &store, &secrets).await,
    }
}

fn kind(store: &StoreArg) -> StoreKind {
    match store.store {
        Store::Keyring => StoreKind::Native,
        Store::Keyutils => StoreKind::Keyutils,
    }
}

fn checked_name(name: &str) -> Result<SecretName, Failure> {
    SecretName::try_from(name.to_string()).map_err(|e| Failure::usage(anyhow!(e)))
}

async fn set(name: &str, store: &StoreArg) -> Result<(), Failure> {
    let name = checked_name(name)?;
    let value = read_value(name.as_str())?;
    let keyring = Keyring::open(kind(store)).await?;
    keyring.set(name.as_str(), value).await?;
    print_stdout(&format!(
        "stored secret `{name}` in the {}\n",
        keyring.kind().label()
    ));
    Ok(())
}

/// The value: all of stdin (less one trailing line break) when stdin is
/// not a terminal, else a prompt that does not echo.
fn read_value(name: &str) -> Result<SecretString, Failure> {
    let mut value = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("value of secret `{name}`: "))?
    } else {
        let mut value = String::new();
        std::io::stdin()
            .read_to_string(&mut value)
            .map_err(|e| anyhow!("cannot read the value from stdin: {e}"))?;
        value
    };
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        return Err(Failure::usage(anyhow!(
            "the value of secret `{name}` is empty; fix: pipe the value on stdin, or type it at the prompt"
        )));
    }
    if value.len() < mcpgw_secrets::MIN_SECRET_BYTES {
        tracing::warn!(
            "secret `{name}` is shorter than {} bytes: it is stored, but too short to redact reliably",
            mcpgw_secrets::MIN_SECRET_BYTES
        );
    }
    Ok(SecretString::from(value))
}

async fn rm(name: &str, store: &StoreArg) -> Result<(), Failure> {
    let name = checked_name(name)?;
    let keyring = Keyring::open(kind(store)).await?;
    if keyring.delete(name.as_str()).await? {
        print_stdout(&format!(
            "removed secret `{name}` from the {}\n",
            keyring.kind().label()
        ));
        Ok(())
    } else {
        Err(anyhow!("the {} holds no secret `{name}`", keyring.kind().label()).into())
    }
}

async fn ls(catalog: Option<&Path>, store: &StoreArg, arg: &SecretsArg) -> Result<(), Failure> {
    let catalog = catalog.map(load).transpose()?;
    let users = catalog.as_ref().map(|c| users(c, None)).unwrap_or_default();
    let kind = kind(store);
    let stored = match Keyring::open(kind).await {
        Ok(keyring) => keyring.list().await,
        Err(err) => Err(err),
    };
    let mut out = String::new();
    match &stored {
        Ok(names) => {
            let _ = writeln!(out, "in the {}:", kind.label());
            let _ = writeln!(out, "{:<32}  USED BY", "SECRET");
            for name in names {
                let used = users.get(name).map_or("-".to_string(), |u| u.join(", "));
                let _ = writeln!(out, "{name:<32}  {used}");
            }
        }
        Err(err) if catalog.is_none() => return Err(anyhow!("{err}").into()),
        Err(err) => tracing::warn!("cannot list the keyring: {err}"),
    }
    if catalog.is_some() {
        let sources = parse_sources(arg)?;
        let names: BTreeSet<String> = users.keys().cloned().collect();
        let resolution = sources.resolve(&names).await;
        if resolution.missing.is_empty() {
            let _ = writeln!(
                out,
                "\nevery secret the catalog uses is available ({sources})"
            );
        } else {
            let _ = writeln!(out, "\nmissing from every source ({sources}):");
            for missing in &resolution.missing {
                let _ = writeln!(
                    out,
                    "  {:<30}  used by {}; fix: {}",
                    missing.name,
                    users[&missing.name].join(", "),
                    how_to_set(&sources, &missing.name)
                );
            }
        }
    }
    print_stdout(&out);
    Ok(())
}
