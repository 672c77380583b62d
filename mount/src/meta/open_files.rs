//! Files this client has open, counted per inode: both engines keep an unlinked file's data
//! while it is open here (sustained) and learn at its last close that the data may go.

use super::{Ino, MetaError, Result};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct OpenFiles(Mutex<HashMap<Ino, u32>>);

pub(crate) fn poisoned<T>(_: std::sync::PoisonError<T>) -> MetaError {
    MetaError::Db("internal lock poisoned".into())
}

impl OpenFiles {
    pub fn open(&self, ino: Ino) -> Result<()> {
        *self.0.lock().map_err(poisoned)?.entry(ino).or_insert(0) += 1;
        Ok(())
    }

    pub fn is_open(&self, ino: Ino) -> Result<bool> {
        Ok(self
            .0
            .lock()
            .map_err(poisoned)?
            .get(&ino)
            .copied()
            .unwrap_or(0)
            > 0)
    }

    /// Counts one close; true when it was the last open of the file here.
    pub fn close(&self, ino: Ino) -> Result<bool> {
        let mut open = self.0.lock().map_err(poisoned)?;
        Ok(match open.get_mut(&ino) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                open.remove(&ino);
                true
            }
            None => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_close_is_reported_once() {
        let o = OpenFiles::default();
        o.open(7).unwrap();
        o.open(7).unwrap();
        assert!(o.is_open(7).unwrap());
        assert!(!o.close(7).unwrap());
        assert!(o.close(7).unwrap());
        assert!(!o.is_open(7).unwrap());
        assert!(
            !o.close(7).unwrap(),
            "closing what is not open is not a last close"
        );
    }
}
