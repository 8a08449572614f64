//! Making sure a server's image is present: inspect it, pull it when the
//! catalog's `pull` policy says so (with progress on the log), or explain
//! how to get it; and, when the catalog or its lockfile pins the image's
//! digest, that it is the pinned image.
//!
//! A pinned image is never pulled by its tag while a local image has that
//! name: the pull could move the name to whatever the registry holds now.
//! Pinned by `NAME@sha256:…`, the exact reference is what is pulled.
//!
//! Podman names what is built, tagged, imported or loaded into it
//! `localhost/NAME:TAG`, while its compatible API may read a catalog's
//! `NAME:TAG` as Docker Hub's (`docker.io/NAME:TAG`) and answer 404: under
//! Podman, a name without a registry that is not found is looked up as
//! `localhost/NAME:TAG` too, before anything is pulled, and the container
//! is created by the name that was found.

use std::collections::HashSet;

use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures::StreamExt;
use mcpgw_catalog::{PullPolicy, ServerSpec};
use tracing::Instrument as _;

use crate::DockerError;

/// A local image, as far as starting a container needs it.
#[derive(Debug, Clone)]
pub(crate) struct Present {
    /// The user its config names.
    pub(crate) user: Option<String>,
    /// Its content digest, `sha256:…`: what a container is created from
    /// when the image is pinned, so the name cannot move in between.
    pub(crate) id: String,
    /// Its registry digests, `NAME@sha256:…`.
    repo_digests: Vec<String>,
    /// The reference it was found by, when not the catalog's own (Podman's
    /// `localhost/NAME:TAG`).
    pub(crate) found_as: Option<String>,
}

impl Present {
    fn is(&self, digest: &str) -> bool {
        self.id == digest
            || self
                .repo_digests
                .iter()
                .any(|d| d.rsplit_once('@').is_some_and(|(_, d)| d == digest))
    }
}

/// Ensures `spec.image` is present (and the pinned one, when pinned).
/// `podman`: Podman serves the API (see the module's notes).
pub(crate) async fn ensure(
    docker: &Docker,
    podman: bool,
    spec: &ServerSpec,
) -> Result<Present, DockerError> {
    ensure_unspanned(docker, podman, spec)
        .instrument(span("image.ensure", spec))
        .await
}

/// The span of image work for `spec` (traces only).
fn span(name: &'static str, spec: &ServerSpec) -> tracing::Span {
    tracing::info_span!(
        target: mcpgw_supervisor::TRACE_TARGET,
        "image",
        otel.name = name,
        container.image.name = %spec.image,
        mcp.server.name = %spec.name,
    )
}

async fn ensure_unspanned(
    docker: &Docker,
    podman: bool,
    spec: &ServerSpec,
) -> Result<Present, DockerError> {
    if let Some(digest) = &spec.image_digest {
        return pinned(docker, podman, spec, digest).await;
    }
    let present = inspect(docker, podman, spec, &spec.image).await?;
    let must_pull = match spec.pull {
        PullPolicy::Always => true,
        PullPolicy::Missing => present.is_none(),
        PullPolicy::Never => false,
    };
    if must_pull {
        if let Err(reason) = pull(docker, spec).await {
            if present.is_none() {
                return Err(missing(spec, &format!(" and pulling it failed: {reason}")));
            }
            tracing::warn!(server = %spec.name, image = %spec.image, %reason, "pull failed; using the local image");
        }
        return inspect(docker, podman, spec, &spec.image)
            .await?
            .ok_or_else(|| missing(spec, " after pulling it"));
    }
    match present {
        Some(image) => Ok(image),
        None => Err(missing(spec, " and the catalog says `pull: never`")),
    }
}

/// The pinned image `digest` under `spec.image`'s name, or why not.
async fn pinned(
    docker: &Docker,
    podman: bool,
    spec: &ServerSpec,
    digest: &str,
) -> Result<Present, DockerError> {
    let mut present = resolve(docker, podman, spec).await?;
    if present.is_none() && spec.pull != PullPolicy::Never {
        // Nothing local has the name, so a pull moves nothing; what it
        // brings is checked like the rest.
        if let Err(reason) = pull(docker, spec).await {
            return Err(missing(spec, &format!(" and pulling it failed: {reason}")));
        }
        present = inspect(docker, podman, spec, &spec.image).await?;
    }
    let Some(image) = present else {
        return Err(missing(
            spec,
            " (it is pinned, so it is only pulled when absent)",
        ));
    };
    if !image.is(digest) {
        return Err(DockerError::ImageDigest {
            server: spec.name.to_string(),
            image: name(spec).to_string(),
            pinned: digest.to_string(),
            found: image.id,
        });
    }
    Ok(image)
}

/// The local image `spec.image` names, without pulling. `NAME@sha256:…`
/// resolves when the engine knows that registry digest; a locally built
/// image has none, so then its name is looked up (and checked by digest).
pub(crate) async fn resolve(
    docker: &Docker,
    podman: bool,
    spec: &ServerSpec,
) -> Result<Option<Present>, DockerError> {
    match inspect(docker, podman, spec, &spec.image).await? {
        Some(image) => Ok(Some(image)),
        None if spec.image.contains('@') => inspect(docker, podman, spec, name(spec)).await,
        None => Ok(None),
    }
}

/// `spec.image` without its digest.
fn name(spec: &ServerSpec) -> &str {
    spec.image
        .split_once('@')
        .map_or(spec.image.as_str(), |(n, _)| n)
}

/// The image `reference` when it is present, `None` when it is not; under
/// Podman, a `reference` without a registry is also looked for as
/// `localhost/…`.
async fn inspect(
    docker: &Docker,
    podman: bool,
    spec: &ServerSpec,
    reference: &str,
) -> Result<Option<Present>, DockerError> {
    if let Some(image) = inspect_one(docker, spec, reference).await? {
        return Ok(Some(image));
    }
    let Some(local) = podman.then(|| podman_local(reference)).flatten() else {
        return Ok(None);
    };
    let found = inspect_one(docker, spec, &local).await?;
    if found.is_some() {
        tracing::debug!(server = %spec.name, image = %reference, found_as = %local, "found under Podman's local name");
    }
    Ok(found.map(|image| Present {
        found_as: Some(local),
        ..image
    }))
}

/// Podman's name for the local image `reference` names when it has no
/// registry (`NAME:TAG` → `localhost/NAME:TAG`); `None` when it has one.
/// As in Docker's references, a first component holding a `.` or a `:`,
/// or `localhost`, is a registry.
fn podman_local(reference: &str) -> Option<String> {
    let registry = reference
        .split_once('/')
        .map(|(first, _)| first)
        .filter(|first| first.contains(['.', ':']) || *first == "localhost");
    match registry {
        Some(_) => None,
        None => Some(format!("localhost/{reference}")),
    }
}

/// The image `reference` when the engine has it by that reference.
async fn inspect_one(
    docker: &Docker,
    spec: &ServerSpec,
    reference: &str,
) -> Result<Option<Present>, DockerError> {
    match docker.inspect_image(reference).await {
        Ok(image) => Ok(Some(Present {
            user: image.config.and_then(|c| c.user),
            id: image.id.unwrap_or_default(),
            repo_digests: image.repo_digests.unwrap_or_default(),
            found_as: None,
        })),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(source) => Err(DockerError::Inspect {
            server: spec.name.to_string(),
            image: spec.image.clone(),
            source,
        }),
    }
}

fn missing(spec: &ServerSpec, reason: &str) -> DockerError {
    let fix = if spec.image.starts_with("mcpgw/") {
        "run `make images`, which builds mcpgw's own images locally".to_string()
    } else {
        format!(
            "build it with `docker build -t {0} .` or pull it with `docker pull {0}`",
            spec.image
        )
    };
    DockerError::ImageMissing {
        server: spec.name.to_string(),
        image: spec.image.clone(),
        reason: reason.to_string(),
        fix,
    }
}

async fn pull(docker: &Docker, spec: &ServerSpec) -> Result<(), String> {
    pull_unspanned(docker, spec)
        .instrument(span("image.pull", spec))
        .await
}

async fn pull_unspanned(docker: &Docker, spec: &ServerSpec) -> Result<(), String> {
    let (image, tag) = split_tag(&spec.image);
    tracing::info!(server = %spec.name, image = %spec.image, "pulling image");
    let options = CreateImageOptionsBuilder::default()
        .from_image(image)
        .tag(tag)
        .build();
    let mut progress = docker.create_image(Some(options), None, None);
    // One log line per layer and status, not per progress tick.
    let mut seen = HashSet::new();
    while let Some(item) = progress.next().await {
        let info = item.map_err(|e| e.to_string())?;
        if let Some(error) = info.error_detail.and_then(|d| d.message) {
            return Err(error);
        }
        let status = info.status.unwrap_or_default();
        let id = info.id.unwrap_or_default();
        if seen.insert(format!("{id} {status}")) {
            tracing::info!(server = %spec.name, layer = %id, "{status}");
        }
    }
    Ok(())
}

/// Splits `repo:tag` (a digest or no tag means `latest` is not assumed
/// wrongly: the whole reference is passed as the image).
fn split_tag(reference: &str) -> (&str, &str) {
    if reference.contains('@') {
        return (reference, "");
    }
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::podman_local;

    #[test]
    fn podman_local_names_only_what_has_no_registry() {
        let local = |r| podman_local(r);
        assert_eq!(
            local("mcpgw-try/testserver:dev").as_deref(),
            Some("localhost/mcpgw-try/testserver:dev")
        );
        assert_eq!(local("testserver").as_deref(), Some("localhost/testserver"));
        assert_eq!(
            local("a/b@sha256:0123").as_deref(),
            Some("localhost/a/b@sha256:0123")
        );
        for registry in [
            "localhost/a:1",
            "localhost:5000/a",
            "ghcr.io/o/a:1",
            "docker.io/library/a",
            "[::1]:5000/a",
        ] {
            assert_eq!(local(registry), None, "{registry}");
        }
    }
}
