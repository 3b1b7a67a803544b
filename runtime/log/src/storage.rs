//! The small file-system surface the log needs, behind a trait so that tests can run the same
//! code on [`crate::sim::SimStorage`], which simulates crashes and injects I/O faults.
//!
//! Contract the log relies on: `write_at` and `read_at` are positional and thread-safe on one
//! handle; data is durable only after `sync_data`; `rename` is atomic and, after `sync_dir` of
//! the parent, durable; `write_atomic` gives all-or-nothing replacement of a small file.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// One open file.
pub trait StorageFile: Send + Sync {
    fn len(&self) -> io::Result<u64>;
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Reads up to `buf.len()` bytes at `pos`; returns fewer only at the end of the file.
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// Reads up to `len` bytes at `pos` onto the end of `out`, returning how many; fewer
    /// only at the end of the file. Memory `out` already has is read into without zeroing it
    /// first (the default here zeroes; the real file does not).
    fn read_append_at(&self, out: &mut Vec<u8>, pos: u64, len: usize) -> io::Result<usize> {
        let from = out.len();
        out.resize(from + len, 0);
        let read = self.read_at(&mut out[from..], pos);
        out.truncate(from + *read.as_ref().unwrap_or(&0));
        read
    }
    /// Writes all of `buf` at `pos`. On error, a prefix may have been written.
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    fn truncate(&self, len: u64) -> io::Result<()>;
    fn sync_data(&self) -> io::Result<()>;

    /// Reads exactly `len` bytes at `pos`, or fails with `UnexpectedEof`.
    fn read_exact_at(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let mut done = 0;
        while done < len {
            let n = self.read_at(&mut buf[done..], pos + done as u64)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "read past end of file",
                ));
            }
            done += n;
        }
        Ok(buf)
    }
}

/// A directory tree of files.
pub trait Storage: Send + Sync + 'static {
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// File and directory names directly inside `path`.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    fn exists(&self, path: &Path) -> bool;
    fn is_dir(&self, path: &Path) -> bool;
    /// Opens (creating if asked) a file for positional reads and writes.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>>;
    /// Opens a file for reads only; never creates or changes anything.
    fn open_read_only(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes creations, renames and removals inside `path` durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let f = self.open_read_only(path)?;
        let len = f.len()? as usize;
        f.read_exact_at(0, len)
    }

    /// Replaces `path` with `bytes` all at once: temp file, fsync, rename, fsync of the folder.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let tmp = path.with_extension("tmp");
        let f = self.open(&tmp, true)?;
        f.truncate(0)?;
        f.write_at(bytes, 0)?;
        f.sync_data()?;
        drop(f);
        self.rename(&tmp, path)?;
        if let Some(parent) = path.parent() {
            self.sync_dir(parent)?;
        }
        Ok(())
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsStorage;

struct FsFile(File);

impl StorageFile for FsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.0.read_at(&mut buf[done..], pos + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
    fn read_append_at(&self, out: &mut Vec<u8>, pos: u64, len: usize) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        out.reserve(len);
        let from = out.len();
        let mut done = 0;
        while done < len {
            let spare = &mut out.spare_capacity_mut()[done..len];
            // SAFETY: pread writes at most `spare.len()` bytes into memory `out` owns and
            // does not read it; only the bytes it reports written are made part of `out`.
            let n = unsafe {
                libc::pread(
                    self.0.as_raw_fd(),
                    spare.as_mut_ptr().cast(),
                    spare.len(),
                    (pos + done as u64) as libc::off_t,
                )
            };
            match n {
                0 => break,
                n if n > 0 => {
                    done += n as usize;
                    // SAFETY: the first `done` spare bytes were written by pread above.
                    unsafe { out.set_len(from + done) };
                }
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        Ok(done)
    }
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.0.write_all_at(buf, pos)
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Storage for FsStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Arc::new(FsFile(f)))
    }
    fn open_read_only(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(FsFile(File::open(path)?)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}

/// Any storage with its fsyncs (of files and directories) timed into a histogram: what the
/// log's `sluice_log_fsync_duration_seconds` shows. Everything else passes through.
pub(crate) struct Timed {
    inner: Arc<dyn Storage>,
    fsync: prometheus_client::metrics::histogram::Histogram,
}

impl Timed {
    pub(crate) fn new(
        inner: Arc<dyn Storage>,
        fsync: prometheus_client::metrics::histogram::Histogram,
    ) -> Timed {
        Timed { inner, fsync }
    }

    fn wrap(&self, file: Arc<dyn StorageFile>) -> Arc<dyn StorageFile> {
        Arc::new(TimedFile {
            inner: file,
            fsync: self.fsync.clone(),
        })
    }
}

struct TimedFile {
    inner: Arc<dyn StorageFile>,
    fsync: prometheus_client::metrics::histogram::Histogram,
}

fn timed<T>(
    h: &prometheus_client::metrics::histogram::Histogram,
    f: impl FnOnce() -> io::Result<T>,
) -> io::Result<T> {
    let started = std::time::Instant::now();
    let r = f();
    h.observe(started.elapsed().as_secs_f64());
    r
}

impl StorageFile for TimedFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn is_empty(&self) -> io::Result<bool> {
        self.inner.is_empty()
    }
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.inner.read_at(buf, pos)
    }
    fn read_append_at(&self, out: &mut Vec<u8>, pos: u64, len: usize) -> io::Result<usize> {
        self.inner.read_append_at(out, pos, len)
    }
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.inner.write_at(buf, pos)
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        timed(&self.fsync, || self.inner.sync_data())
    }
    fn read_exact_at(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        self.inner.read_exact_at(pos, len)
    }
}

impl Storage for Timed {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.inner.is_dir(path)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        Ok(self.wrap(self.inner.open(path, create)?))
    }
    fn open_read_only(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        // Read-only files are never synced: no wrapper in their read path.
        self.inner.open_read_only(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        timed(&self.fsync, || self.inner.sync_dir(path))
    }
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.inner.read_file(path)
    }
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        // The inner storage's own replacement, with its fsyncs counted as one.
        timed(&self.fsync, || self.inner.write_atomic(path, bytes))
    }
}
