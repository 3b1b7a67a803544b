//! An in-memory [`Storage`] that simulates power loss and injects I/O faults.
//!
//! Each file keeps what was written and what was last made durable by `sync_data`.
//! [`SimStorage::crash_image`] returns the storage as a machine would find it after power
//! loss: the durable bytes of every file plus, depending on [`TornWrites`], none, all or a
//! random prefix (possibly with a garbage byte) of what was written after the last sync.
//! Directory operations (create, rename, remove) are treated as durable at once.
//!
//! Faults: a disk capacity (writes past it write a prefix, then fail with `ENOSPC`, as a real
//! full disk does), failing `sync_data`, and failing writes.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::storage::{Storage, StorageFile};

/// What survives of data written after the last fsync when the power goes.
#[derive(Debug, Clone, Copy)]
pub enum TornWrites {
    /// Everything not synced is lost.
    LoseUnsynced,
    /// Everything written survives (a process crash: the page cache is intact).
    KeepAll,
    /// A pseudo-random prefix of the unsynced tail survives, its last byte possibly garbage.
    Random(u64),
}

#[derive(Default, Clone)]
struct Inode {
    data: Vec<u8>,
    /// `data[..durable_len]` is durable, unless `overwritten` holds the durable bytes that a
    /// later in-place write or truncation replaced (kept only until the next sync).
    durable_len: usize,
    overwritten: Option<Vec<u8>>,
}

impl Inode {
    fn durable(&self) -> &[u8] {
        match &self.overwritten {
            Some(old) => old,
            None => &self.data[..self.durable_len],
        }
    }

    /// Called before changing bytes below `durable_len`.
    fn preserve_durable(&mut self) {
        if self.overwritten.is_none() {
            self.overwritten = Some(self.data[..self.durable_len].to_vec());
        }
    }

    fn sync(&mut self) {
        self.durable_len = self.data.len();
        self.overwritten = None;
    }

    fn fresh(data: Vec<u8>) -> Inode {
        Inode {
            durable_len: data.len(),
            data,
            overwritten: None,
        }
    }
}

#[derive(Default)]
struct Faults {
    capacity: AtomicU64, // 0 = unlimited
    used: AtomicU64,
    fail_sync: AtomicBool,
    fail_writes: AtomicBool,
}

#[derive(Default)]
struct Tree {
    files: BTreeMap<PathBuf, Arc<Mutex<Inode>>>,
    dirs: BTreeSet<PathBuf>,
}

/// See the module docs.
#[derive(Clone, Default)]
pub struct SimStorage {
    tree: Arc<Mutex<Tree>>,
    faults: Arc<Faults>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not hide the state from the next assertion.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

impl SimStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Limits the total bytes of all files; 0 removes the limit.
    pub fn set_capacity(&self, bytes: u64) {
        self.faults.capacity.store(bytes, Ordering::SeqCst);
    }

    /// Total bytes held by all files now.
    pub fn used_bytes(&self) -> u64 {
        self.faults.used.load(Ordering::SeqCst)
    }

    pub fn fail_syncs(&self, fail: bool) {
        self.faults.fail_sync.store(fail, Ordering::SeqCst);
    }

    pub fn fail_writes(&self, fail: bool) {
        self.faults.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// The storage after a power loss now, as a new independent instance.
    pub fn crash_image(&self, torn: TornWrites) -> SimStorage {
        let tree = lock(&self.tree);
        let mut rng = match torn {
            TornWrites::Random(seed) => seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            _ => 1,
        };
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut files = BTreeMap::new();
        let mut used = 0;
        for (path, inode) in &tree.files {
            let inode = lock(inode);
            let mut data = inode.durable().to_vec();
            let extends = inode.overwritten.is_none() && inode.data.len() > data.len();
            if extends {
                let tail = &inode.data[data.len()..];
                match torn {
                    TornWrites::LoseUnsynced => {}
                    TornWrites::KeepAll => data.extend_from_slice(tail),
                    TornWrites::Random(_) => {
                        let keep = (next() % (tail.len() as u64 + 1)) as usize;
                        data.extend_from_slice(&tail[..keep]);
                        if keep > 0 && next() % 2 == 0 {
                            let last = data.len() - 1;
                            data[last] ^= 0x5A;
                        }
                    }
                }
            } else if !matches!(torn, TornWrites::LoseUnsynced) {
                // Rewritten in place or truncated since the last sync: the page cache version wins
                // on a process crash; on power loss the durable version does.
                if matches!(torn, TornWrites::KeepAll) {
                    data = inode.data.clone();
                }
            }
            used += data.len() as u64;
            files.insert(path.clone(), Arc::new(Mutex::new(Inode::fresh(data))));
        }
        let faults = Faults::default();
        faults.used.store(used, Ordering::SeqCst);
        SimStorage {
            tree: Arc::new(Mutex::new(Tree {
                files,
                dirs: tree.dirs.clone(),
            })),
            faults: Arc::new(faults),
        }
    }

    /// Flips one byte of a file, durably (simulates media corruption).
    pub fn corrupt(&self, path: &Path, at: usize) {
        let tree = lock(&self.tree);
        if let Some(inode) = tree.files.get(path) {
            let mut inode = lock(inode);
            if at < inode.data.len() {
                inode.data[at] ^= 0xFF;
                inode.sync();
            }
        }
    }

    /// Paths of all files, for tests that look at the layout.
    pub fn file_paths(&self) -> Vec<PathBuf> {
        lock(&self.tree).files.keys().cloned().collect()
    }
}

struct SimFile {
    inode: Arc<Mutex<Inode>>,
    faults: Arc<Faults>,
}

impl StorageFile for SimFile {
    fn len(&self) -> io::Result<u64> {
        Ok(lock(&self.inode).data.len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let inode = lock(&self.inode);
        let pos = pos as usize;
        if pos >= inode.data.len() {
            return Ok(0);
        }
        let n = buf.len().min(inode.data.len() - pos);
        buf[..n].copy_from_slice(&inode.data[pos..pos + n]);
        Ok(n)
    }

    fn read_append_at(&self, out: &mut Vec<u8>, pos: u64, len: usize) -> io::Result<usize> {
        let inode = lock(&self.inode);
        let pos = (pos as usize).min(inode.data.len());
        let n = len.min(inode.data.len() - pos);
        out.extend_from_slice(&inode.data[pos..pos + n]);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        if self.faults.fail_writes.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let mut inode = lock(&self.inode);
        let pos = pos as usize;
        if pos < inode.durable_len {
            inode.preserve_durable();
        }
        let end = pos + buf.len();
        let growth = end.saturating_sub(inode.data.len()) as u64;
        let capacity = self.faults.capacity.load(Ordering::SeqCst);
        let used = self.faults.used.load(Ordering::SeqCst);
        let (writable, full) = if capacity > 0 && used + growth > capacity {
            let room = capacity.saturating_sub(used) as usize;
            let allowed_end = (inode.data.len() + room).max(pos);
            (allowed_end.min(end) - pos, true)
        } else {
            (buf.len(), false)
        };
        if inode.data.len() < pos + writable {
            let old = inode.data.len();
            inode.data.resize(pos + writable, 0);
            self.faults
                .used
                .fetch_add((pos + writable - old) as u64, Ordering::SeqCst);
        }
        inode.data[pos..pos + writable].copy_from_slice(&buf[..writable]);
        if full {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        let mut inode = lock(&self.inode);
        if (len as usize) < inode.durable_len {
            inode.preserve_durable();
        }
        let old = inode.data.len() as u64;
        inode.data.resize(len as usize, 0);
        if len < old {
            self.faults.used.fetch_sub(old - len, Ordering::SeqCst);
        } else {
            self.faults.used.fetch_add(len - old, Ordering::SeqCst);
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        if self.faults.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        lock(&self.inode).sync();
        Ok(())
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut tree = lock(&self.tree);
        for ancestor in path.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                tree.dirs.insert(ancestor.to_path_buf());
            }
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let tree = lock(&self.tree);
        if !tree.dirs.contains(path) {
            return Err(not_found(path));
        }
        let mut names = BTreeSet::new();
        let children = tree.files.keys().chain(tree.dirs.iter());
        for child in children {
            if child.parent() == Some(path) {
                if let Some(name) = child.file_name() {
                    names.insert(name.to_string_lossy().into_owned());
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    fn exists(&self, path: &Path) -> bool {
        let tree = lock(&self.tree);
        tree.files.contains_key(path) || tree.dirs.contains(path)
    }

    fn is_dir(&self, path: &Path) -> bool {
        lock(&self.tree).dirs.contains(path)
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let mut tree = lock(&self.tree);
        let inode = match tree.files.get(path) {
            Some(inode) => inode.clone(),
            None if create => {
                let parent = path.parent().unwrap_or(Path::new(""));
                if !tree.dirs.contains(parent) {
                    return Err(not_found(parent));
                }
                let inode = Arc::new(Mutex::new(Inode::default()));
                tree.files.insert(path.to_path_buf(), inode.clone());
                inode
            }
            None => return Err(not_found(path)),
        };
        Ok(Arc::new(SimFile {
            inode,
            faults: self.faults.clone(),
        }))
    }

    fn open_read_only(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        self.open(path, false)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut tree = lock(&self.tree);
        if let Some(inode) = tree.files.remove(from) {
            if let Some(old) = tree.files.insert(to.to_path_buf(), inode) {
                let len = lock(&old).data.len() as u64;
                self.faults.used.fetch_sub(len, Ordering::SeqCst);
            }
            return Ok(());
        }
        if tree.dirs.contains(from) {
            let moved: Vec<PathBuf> = tree
                .dirs
                .iter()
                .filter(|d| d.starts_with(from))
                .cloned()
                .collect();
            for d in moved {
                tree.dirs.remove(&d);
                let rest = d.strip_prefix(from).unwrap_or(Path::new(""));
                tree.dirs.insert(to.join(rest));
            }
            let files: Vec<PathBuf> = tree
                .files
                .keys()
                .filter(|f| f.starts_with(from))
                .cloned()
                .collect();
            for f in files {
                if let Some(inode) = tree.files.remove(&f) {
                    let rest = f.strip_prefix(from).unwrap_or(Path::new(""));
                    tree.files.insert(to.join(rest), inode);
                }
            }
            return Ok(());
        }
        Err(not_found(from))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut tree = lock(&self.tree);
        let inode = tree.files.remove(path).ok_or_else(|| not_found(path))?;
        let len = lock(&inode).data.len() as u64;
        self.faults.used.fetch_sub(len, Ordering::SeqCst);
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut tree = lock(&self.tree);
        if !tree.dirs.contains(path) {
            return Err(not_found(path));
        }
        tree.dirs.retain(|d| !d.starts_with(path));
        let files: Vec<PathBuf> = tree
            .files
            .keys()
            .filter(|f| f.starts_with(path))
            .cloned()
            .collect();
        for f in files {
            if let Some(inode) = tree.files.remove(&f) {
                let len = lock(&inode).data.len() as u64;
                self.faults.used.fetch_sub(len, Ordering::SeqCst);
            }
        }
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        if self.faults.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        if lock(&self.tree).dirs.contains(path) {
            Ok(())
        } else {
            Err(not_found(path))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_loss_keeps_only_synced_bytes() {
        let s = SimStorage::new();
        s.create_dir_all(Path::new("/d")).unwrap();
        let f = s.open(Path::new("/d/a"), true).unwrap();
        f.write_at(b"hello", 0).unwrap();
        f.sync_data().unwrap();
        f.write_at(b" world", 5).unwrap();
        let lost = s.crash_image(TornWrites::LoseUnsynced);
        assert_eq!(lost.read_file(Path::new("/d/a")).unwrap(), b"hello");
        let kept = s.crash_image(TornWrites::KeepAll);
        assert_eq!(kept.read_file(Path::new("/d/a")).unwrap(), b"hello world");
    }

    #[test]
    fn full_disk_writes_a_prefix_then_fails_with_enospc() {
        let s = SimStorage::new();
        s.create_dir_all(Path::new("/d")).unwrap();
        s.set_capacity(8);
        let f = s.open(Path::new("/d/a"), true).unwrap();
        let err = f.write_at(b"0123456789", 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(f.len().unwrap(), 8);
    }
}
