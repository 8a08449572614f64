//! Errors of the Docker engine's container operations, each naming the server and what
//! to do about it.

/// Why a container operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// No engine answered.
    #[error(
        "cannot reach the {engine} engine: {error}; fix: {fix} (mcpgw runs every server in a container and cannot work without an engine)"
    )]
    EngineUnavailable {
        /// `Docker` or `Podman`.
        engine: &'static str,
        /// What bollard reported (in the message, so not also a `source`
        /// that `{:#}` would print a second time).
        error: bollard::errors::Error,
        /// How to make it answer.
        fix: &'static str,
    },
    /// The image is not present and was not (or could not be) pulled.
    #[error("server `{server}`: image `{image}` is not present locally{reason}; fix: {fix}")]
    ImageMissing {
        /// The catalog server.
        server: String,
        /// The image reference.
        image: String,
        /// Why pulling did not help, if it was tried.
        reason: String,
        /// How to get the image.
        fix: String,
    },
    /// The image is not the one the catalog or its lockfile pins.
    #[error(
        "server `{server}`: image `{image}` is {found}, not the pinned {pinned}; it was not started; fix: if the new image is wanted, review it and run `mcpgw lock --update` (or change the digest in `image:`); otherwise restore the pinned image"
    )]
    ImageDigest {
        /// The catalog server.
        server: String,
        /// The image name.
        image: String,
        /// The digest the catalog or lockfile pins.
        pinned: String,
        /// The digest of the image under that name.
        found: String,
    },
    /// The engine could not inspect an image.
    #[error("server `{server}`: cannot inspect image `{image}`: {source}")]
    Inspect {
        /// The catalog server.
        server: String,
        /// The image reference.
        image: String,
        /// What the engine said.
        #[source]
        source: bollard::errors::Error,
    },
    /// Staging `as: file` secrets on the host failed.
    #[error("server `{server}`: cannot write its secret files to a host tmpfs: {source}")]
    SecretFiles {
        /// The catalog server.
        server: String,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The engine refused to create the container.
    #[error("server `{server}`: the engine refused to create its container: {source}")]
    Create {
        /// The catalog server.
        server: String,
        /// What the engine said.
        #[source]
        source: bollard::errors::Error,
    },
    /// Attaching to the container's stdio failed.
    #[error("server `{server}`: cannot attach to its container: {source}")]
    Attach {
        /// The catalog server.
        server: String,
        /// What the engine said.
        #[source]
        source: bollard::errors::Error,
    },
    /// The container was created but would not start.
    #[error("server `{server}`: its container would not start: {source}")]
    Start {
        /// The catalog server.
        server: String,
        /// What the engine said.
        #[source]
        source: bollard::errors::Error,
    },
    /// The egress proxy's image could not be made from this binary.
    #[error("server `{server}`: cannot make the egress proxy's image: {reason}; fix: {fix}")]
    ProxyImage {
        /// The catalog server.
        server: String,
        /// What went wrong.
        reason: String,
        /// What to do.
        fix: &'static str,
    },
    /// The engine refused a step of an egress server's set-up: its
    /// network, or its proxy.
    #[error("server `{server}`: cannot {step}: {source}")]
    Egress {
        /// The catalog server.
        server: String,
        /// The step, in words.
        step: &'static str,
        /// What the engine said.
        #[source]
        source: bollard::errors::Error,
    },
    /// Listing containers failed.
    #[error("cannot list containers: {source}")]
    List {
        /// What the engine said.
        #[source]
        source: bollard::errors::Error,
    },
}

impl DockerError {
    /// Whether retrying cannot help until someone acts (an image to build,
    /// a catalog to fix), as opposed to a failure that may pass.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::ImageMissing { .. } | Self::ImageDigest { .. } | Self::ProxyImage { .. }
        )
    }

    /// Whether the engine itself could not be reached (as opposed to the
    /// engine refusing a request): not the server's fault.
    pub fn is_engine_down(&self) -> bool {
        let source = match self {
            Self::EngineUnavailable { .. } => return true,
            Self::ImageMissing { .. }
            | Self::ImageDigest { .. }
            | Self::SecretFiles { .. }
            | Self::ProxyImage { .. } => {
                return false;
            }
            Self::Inspect { source, .. }
            | Self::Create { source, .. }
            | Self::Attach { source, .. }
            | Self::Start { source, .. }
            | Self::Egress { source, .. }
            | Self::List { source } => source,
        };
        !matches!(
            source,
            bollard::errors::Error::DockerResponseServerError { .. }
                | bollard::errors::Error::DockerStreamError { .. }
        )
    }
}
