//! Plaintext key material: zeroized on drop, never printed.

use zeroize::Zeroizing;

/// The bytes of a plaintext data encryption key (DEK).
///
/// Deliberately not `Debug`, `Display`, `Clone` or `Serialize`: key bytes must never reach a
/// log line, an error or a Kubernetes object. The bytes are wiped when the value is dropped.
pub struct KeyMaterial(Zeroizing<Vec<u8>>);

impl KeyMaterial {
    /// Takes ownership of freshly unwrapped or generated key bytes.
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
