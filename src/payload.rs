//! The files a seed carries besides its configuration (validator keys, the
//! staking release), as cloud-init `write_files` entries. Made by the
//! staking section, placed in the user-data by the render stage.

/// Files a machine's seed carries besides its configuration (the NFS
/// server's validator keys, the master's staking release), by machine.
#[derive(Debug, Clone, Default)]
pub struct Payload {
    pub files: std::collections::BTreeMap<String, Vec<PayloadFile>>,
}

/// One cloud-init `write_files` entry with base64 content.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PayloadFile {
    pub path: String,
    pub permissions: String,
    /// `b64`, or `gz+b64` for text worth compressing.
    pub encoding: String,
    pub content: String,
}

impl PayloadFile {
    /// Root-owned, `mode`, gzip-compressed when `gzip` (deterministic: no
    /// name or time in the gzip header).
    pub fn new(path: impl Into<String>, mode: u32, bytes: &[u8], gzip: bool) -> PayloadFile {
        use base64::Engine as _;
        use std::io::Write as _;
        let (encoding, data) = if gzip {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            // Writing to a Vec cannot fail.
            let _ = enc.write_all(bytes);
            ("gz+b64", enc.finish().unwrap_or_default())
        } else {
            ("b64", bytes.to_vec())
        };
        PayloadFile {
            path: path.into(),
            permissions: format!("{mode:04o}"),
            encoding: encoding.into(),
            content: base64::engine::general_purpose::STANDARD.encode(data),
        }
    }
}

impl Payload {
    pub fn for_machine(&self, name: &str) -> &[PayloadFile] {
        self.files.get(name).map(Vec::as_slice).unwrap_or(&[])
    }
    /// Every encoded content, for masking output.
    pub fn contents(&self) -> Vec<String> {
        self.files
            .values()
            .flatten()
            .map(|f| f.content.clone())
            .collect()
    }
}
