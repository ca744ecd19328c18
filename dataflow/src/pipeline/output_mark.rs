//! `OUT/_committed.json`: which state an output directory belongs to and the last epoch that
//! state committed. `steel run` checks it before it touches the output (a second state aimed
//! at the same output would otherwise remove the first one's epochs as leftovers) and writes it
//! after every commit; `steel pack` reads only the epochs it names as committed, so an epoch
//! renamed into place but not yet committed (the run may still be killed and redo it) is
//! never packed.

use crate::pipeline::state::{StateError, io_error, sync_dir, write_synced};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const OUTPUT_MARK: &str = "_committed.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputMark {
    /// The id of the state directory that writes this output (`Manifest::id`).
    pub state: String,
    /// The last epoch that state committed (0: none yet).
    pub committed: u64,
}

impl OutputMark {
    /// The mark of `output`, `None` where there is none (a new output, or one written before
    /// Steel kept marks).
    pub fn read(output: &Path) -> Result<Option<OutputMark>, StateError> {
        let path = output.join(OUTPUT_MARK);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Invalid {
                dir: path,
                reason: format!("not an output mark: {e}"),
            })
    }

    /// Write it atomically (temporary file, sync, rename, sync the directory).
    pub fn write(&self, output: &Path) -> Result<(), StateError> {
        std::fs::create_dir_all(output).map_err(io_error(output))?;
        let path = output.join(OUTPUT_MARK);
        let tmp = output.join(format!("{OUTPUT_MARK}.tmp"));
        write_synced(&tmp, &serde_json::to_vec(self).expect("a mark serialises"))?;
        std::fs::rename(&tmp, &path).map_err(io_error(&path))?;
        sync_dir(output)
    }
}

/// Refuse an output that another state writes, one whose mark names epochs this state never
/// committed (its state was deleted or rebuilt: removing them as leftovers would lose them),
/// or one that holds epochs and no mark while this state has none.
pub fn check_output(output: &Path, state_id: &str, last_epoch: u64) -> Result<(), StateError> {
    let refuse = |reason: String| StateError::Invalid {
        dir: output.to_path_buf(),
        reason,
    };
    match OutputMark::read(output)? {
        Some(mark) if mark.state != state_id => Err(refuse(format!(
            "it is written by another state directory (id {}, this one is {state_id}); give this pipeline its own output",
            mark.state
        ))),
        Some(mark) if mark.committed > last_epoch => Err(refuse(format!(
            "it holds epochs up to {} but the state has committed only {last_epoch} (was the state directory deleted or replaced?); nothing was changed",
            mark.committed
        ))),
        Some(_) => Ok(()),
        None if last_epoch == 0 && has_committed_epochs(output) => Err(refuse(
            "it holds epochs of another run (no _committed.json names this state); give this pipeline an empty output".into(),
        )),
        None => Ok(()),
    }
}

/// Whether `output` holds an `epoch-NNNNNN` directory (not `.tmp`).
fn has_committed_epochs(output: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(output) else {
        return false;
    };
    entries.filter_map(|e| e.ok()).any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.strip_prefix("epoch-")
            .is_some_and(|n| n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_of_another_state_or_of_an_unmarked_run_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        check_output(out, "a", 0).unwrap();
        OutputMark {
            state: "a".into(),
            committed: 3,
        }
        .write(out)
        .unwrap();
        assert_eq!(OutputMark::read(out).unwrap().unwrap().committed, 3);
        check_output(out, "a", 3).unwrap();
        let err = check_output(out, "a", 1).unwrap_err().to_string();
        assert!(
            err.contains("holds epochs up to 3 but the state has committed only 1"),
            "{err}"
        );
        let err = check_output(out, "b", 0).unwrap_err().to_string();
        assert!(
            err.contains("another state directory (id a, this one is b)"),
            "{err}"
        );
        std::fs::remove_file(out.join(OUTPUT_MARK)).unwrap();
        std::fs::create_dir(out.join("epoch-000001")).unwrap();
        let err = check_output(out, "b", 0).unwrap_err().to_string();
        assert!(err.contains("holds epochs of another run"), "{err}");
        check_output(out, "b", 1).unwrap();
    }
}
