//! Reading a data file: its bytes, decompressed when they are gzip whatever the file's name, or
//! its UTF-8 text.

use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::data_error;
use crate::WorkerError;

/// The first bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Most bytes a data file may decompress to: a gzip bomb must be an error, not an abort.
const MAX_FILE_BYTES: u64 = 1 << 31;

/// How a path is named in errors.
pub(super) fn source(path: &Path) -> String {
    path.display().to_string()
}

/// The file's bytes as stored.
pub(super) fn read_raw(path: &Path) -> Result<Vec<u8>, WorkerError> {
    std::fs::read(path).map_err(|e| WorkerError::DataFile {
        path: source(path),
        source: e,
    })
}

/// A file's bytes, decompressed if they start with gzip's magic bytes (whatever the name).
pub(super) fn contents(bytes: Vec<u8>, name: &str) -> Result<Vec<u8>, WorkerError> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    // MultiGzDecoder: concatenated gzip members (`cat a.gz b.gz`) are one valid file.
    MultiGzDecoder::new(&bytes[..])
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| data_error(name, 0, format!("cannot decompress gzip: {e}")))?;
    if out.len() as u64 > MAX_FILE_BYTES {
        return Err(data_error(
            name,
            0,
            format!("decompresses to more than {MAX_FILE_BYTES} bytes"),
        ));
    }
    Ok(out)
}

/// A file's contents as UTF-8 text; the error names the first line that is not.
pub(super) fn text(bytes: Vec<u8>, name: &str) -> Result<String, WorkerError> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        data_error(name, line, "not UTF-8 text")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trainer::data::test_support::{data_error_at, gzip, TempDir};

    #[test]
    fn gzip_is_told_by_content_and_corruption_is_an_error() {
        let dir = TempDir::new("file");
        let plain = dir.write("plain.gz", b"a,b\n1,2\n");
        let packed = dir.write("packed.csv", &gzip(b"a,b\n1,2\n"));
        let read = |path: &Path| contents(read_raw(path).unwrap(), "f");
        assert_eq!(read(&plain).unwrap(), b"a,b\n1,2\n");
        assert_eq!(read(&packed).unwrap(), b"a,b\n1,2\n");

        let corrupt = dir.write("corrupt.gz", &gzip(b"x")[..8]);
        assert_eq!(data_error_at(read(&corrupt)).1, 0);
    }

    #[test]
    fn a_file_that_cannot_be_read_is_named_with_its_cause() {
        let dir = TempDir::new("unreadable");
        let missing = dir.path().join("missing.csv");
        for (path, kind) in [
            (missing.as_path(), std::io::ErrorKind::NotFound),
            (dir.path(), std::io::ErrorKind::IsADirectory),
        ] {
            match read_raw(path) {
                Err(WorkerError::DataFile { path: name, source }) => {
                    assert_eq!((name, source.kind()), (path.display().to_string(), kind));
                }
                other => panic!("{path:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn text_must_be_utf8_and_the_error_names_the_line() {
        let error = text(b"a,label\n1,0\n\xe9,1\n".to_vec(), "l.csv");
        assert_eq!(data_error_at(error), ("l.csv".to_string(), 3));
    }
}
