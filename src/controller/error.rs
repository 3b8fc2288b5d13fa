//! Errors of the controller layer: the policy folder (what file, which document, which field) and
//! the cluster (leader election, watches).

use std::fmt;
use std::path::PathBuf;

/// One thing wrong in a policy folder, naming the file and, when known, the document, the object
/// and the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProblem {
    /// The file the problem is in (the folder itself when the folder cannot be read).
    pub file: PathBuf,
    /// Position of the YAML document in the file, from 1.
    pub document: Option<usize>,
    /// `Kind name` or `Kind namespace/name`, when the document got that far.
    pub object: Option<String>,
    /// The offending field (`spec.keys[0].algorithm`), when one is to blame.
    pub field: Option<String>,
    /// What is wrong, for people.
    pub message: String,
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(document) = self.document {
            write!(f, ": document {document}")?;
        }
        if let Some(object) = &self.object {
            write!(f, " ({object})")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Errors of the controller layer.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The policy folder cannot be listed.
    #[error("cannot read policy folder {}: {source}", dir.display())]
    ReadDir {
        /// The policy folder, as configured.
        dir: PathBuf,
        /// The I/O error from listing it.
        source: std::io::Error,
    },
    /// The policy folder holds invalid documents; every problem is listed, `; `-separated.
    #[error("invalid policy folder {}: {}", dir.display(), join(problems))]
    InvalidPolicyDir {
        /// The policy folder, as configured.
        dir: PathBuf,
        /// Every problem found; never empty.
        problems: Vec<FileProblem>,
    },
    /// The Lease that elects the status writer could not be managed.
    #[error("leader election on Lease {lease}: {source}")]
    LeaderElection {
        /// The Lease, as `namespace/name`.
        lease: String,
        /// The lease manager's error.
        source: kube_lease_manager::LeaseManagerError,
    },
    /// A watch stream ended, which only happens when the process is shutting down.
    #[error("the watch of {kind} ended")]
    WatchEnded {
        /// What was being watched, e.g. "signet resources".
        kind: &'static str,
    },
}

fn join(problems: &[FileProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
