//! Making sure a server's image is present: inspect it, pull it when the
//! catalog's `pull` policy says so (with progress on the log), or explain
//! how to get it.

use std::collections::HashSet;

use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures::StreamExt;
use mcpgw_catalog::{PullPolicy, ServerSpec};

use crate::DockerError;

/// Ensures `spec.image` is present and returns the user its config names.
pub(crate) async fn ensure(
    docker: &Docker,
    spec: &ServerSpec,
) -> Result<Option<String>, DockerError> {
    let present = inspect(docker, spec).await?;
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
        return Ok(inspect(docker, spec).await?.flatten());
    }
    match present {
        Some(user) => Ok(user),
        None => Err(missing(spec, " and the catalog says `pull: never`")),
    }
}

/// `Some(user)` when the image is present, `None` when it is not.
async fn inspect(
    docker: &Docker,
    spec: &ServerSpec,
) -> Result<Option<Option<String>>, DockerError> {
    match docker.inspect_image(&spec.image).await {
        Ok(image) => Ok(Some(image.config.and_then(|c| c.user))),
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
