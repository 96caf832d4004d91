//! Files beneath the root: lexical checks, links on the way, protected paths, the capability.

use std::path::{Component, Path, PathBuf};

use crate::{display, network::parse_strict, refuse, AddressPolicy, PolicyError};

pub(crate) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

pub(crate) fn create_root(root: &Path) -> Result<PathBuf, PolicyError> {
    if !root.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(root).map_err(|e| {
            refuse(format!(
                "cannot create the file root '{}' (dpf.transfer.file.root): {e}",
                root.display()
            ))
        })?;
    }
    let canonical = root.canonicalize().map_err(|e| {
        refuse(format!(
            "cannot resolve the file root '{}' (dpf.transfer.file.root): {e}",
            root.display()
        ))
    })?;
    if !canonical.is_dir() {
        return Err(refuse(format!(
            "the file root '{}' (dpf.transfer.file.root) is not a directory",
            root.display()
        )));
    }
    Ok(canonical)
}

/// The canonical form of `path`: its longest existing prefix canonicalised, the rest appended.
pub(crate) fn resolve_existing_prefix(path: &Path) -> Option<PathBuf> {
    let path = absolute(path);
    let mut existing = path.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(canonical) = existing.canonicalize() {
            let mut full = canonical;
            for part in rest.iter().rev() {
                full.push(part);
            }
            return Some(full);
        }
        rest.push(existing.file_name()?.to_owned());
        existing = existing.parent()?;
    }
}

impl AddressPolicy {
    /// Opens the file root as a directory capability: every path opened through it resolves
    /// beneath the root, never following a link out of it.
    ///
    /// # Errors
    /// No root configured, or it cannot be opened.
    pub fn open_root(&self) -> std::io::Result<cap_std::fs::Dir> {
        let root = self.file_root().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "File addresses are disabled (no dpf.transfer.file.root)",
            )
        })?;
        cap_std::fs::Dir::open_ambient_dir(root, cap_std::ambient_authority())
    }

    /// Checks a file path and returns it relative to the root (normalised: no `.`, no empty
    /// components), ready for [`open_root`](Self::open_root).
    ///
    /// # Errors
    /// No root; an empty path or one with a NUL; an absolute path not beneath the root; a
    /// `..` component; an existing symbolic link on the way that leaves the root; a protected
    /// path.
    pub fn check_file(&self, raw: &str) -> Result<PathBuf, PolicyError> {
        let Some(root) = self.file_root() else {
            return Err(refuse(
                "File addresses are disabled on this data plane (no dpf.transfer.file.root)",
            ));
        };
        if raw.trim().is_empty() || raw.contains('\0') {
            return Err(refuse("a file path must be non-blank and contain no NUL"));
        }
        let absolute_form;
        let mut path = Path::new(raw);
        if self.inner.unrestricted && path.is_relative() {
            absolute_form = absolute(path);
            path = &absolute_form;
        }
        let relative = if path.is_absolute() {
            path.strip_prefix(root).map_err(|_| {
                refuse(format!(
                    "file path '{raw}' is outside this data plane's file root (dpf.transfer.file.root); give a path relative to the root"
                ))
            })?
        } else {
            path
        };
        let mut normalised = PathBuf::new();
        for component in relative.components() {
            match component {
                Component::Normal(part) => normalised.push(part),
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(refuse(format!("file path '{raw}' must not contain '..'")))
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(refuse(format!("file path '{raw}' is not beneath the root")))
                }
            }
        }
        if normalised.as_os_str().is_empty() {
            return Err(refuse(format!("file path '{raw}' names the root itself")));
        }
        let full = root.join(&normalised);
        // Links already on the way must stay beneath the root (the capability enforces it
        // again when the file is opened; this gives a clear 4xx up front).
        let resolved = resolve_existing_prefix(&full).unwrap_or_else(|| full.clone());
        if !resolved.starts_with(root) {
            return Err(refuse(format!(
                "file path '{raw}' leads outside the file root through a symbolic link"
            )));
        }
        if self
            .inner
            .protected
            .iter()
            .any(|p| resolved.starts_with(p) || p.starts_with(&resolved) && resolved != root)
        {
            return Err(refuse(format!(
                "file path '{raw}' is one of the data plane's own files"
            )));
        }
        Ok(normalised)
    }

    /// Checks a `file://` URL (DPS data addresses only: refused unless
    /// [`AddressPolicyBuilder::allow_file_urls`]) and returns its path relative to the root.
    ///
    /// # Errors
    /// As [`check_file`](Self::check_file), or file URLs disabled, or not a local file URL.
    pub fn check_file_url(&self, raw: &str) -> Result<PathBuf, PolicyError> {
        if !self.inner.allow_file_urls {
            return Err(refuse(
                "file:// data addresses are disabled on this data plane (dpf.transfer.allow-file-addresses)",
            ));
        }
        let url = parse_strict(raw)?;
        if url.scheme() != "file" {
            return Err(refuse(format!("'{}' is not a file:// URL", display(&url))));
        }
        let path = url
            .to_file_path()
            .map_err(|()| refuse(format!("'{}' is not a local file URL", display(&url))))?;
        self.check_file(&path.to_string_lossy())
    }
}
