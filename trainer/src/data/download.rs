//! Downloading the official CIFAR-10 binary archive and checking its MD5 before unpacking.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use flate2::read::GzDecoder;
use indicatif::{ProgressBar, ProgressStyle};
use md5::{Digest, Md5};

/// The official archive.
pub const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
/// MD5 of the official archive, as published with it.
pub const CIFAR10_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";

/// Downloads the official archive into `dest`, checks it and unpacks it there; returns the
/// `cifar-10-batches-bin` folder.
pub fn fetch_cifar10(dest: &Path) -> Result<PathBuf> {
    fetch_and_unpack(CIFAR10_URL, CIFAR10_MD5, dest)
}

/// Downloads `url` into `dest`, checks its MD5 against `md5_hex`, unpacks the `.tar.gz` there
/// and returns `dest/cifar-10-batches-bin`. The archive is removed once unpacked; a bad one is
/// removed and reported.
pub fn fetch_and_unpack(url: &str, md5_hex: &str, dest: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let archive = dest.join("cifar-10-binary.tar.gz");
    let partial = dest.join("cifar-10-binary.tar.gz.part");
    eprintln!("CIFAR-10 not found: downloading {url}");
    let digest = download(url, &partial)?;
    if digest != md5_hex {
        let _ = std::fs::remove_file(&partial);
        bail!("the download from {url} is corrupt: MD5 {digest}, expected {md5_hex}");
    }
    std::fs::rename(&partial, &archive)?;
    unpack(&archive, dest)?;
    std::fs::remove_file(&archive)?;
    let dir = dest.join("cifar-10-batches-bin");
    if !super::cifar::is_complete(&dir) {
        bail!(
            "{} did not contain cifar-10-batches-bin with all batch files",
            archive.display()
        );
    }
    eprintln!("CIFAR-10 ready in {}", dir.display());
    Ok(dir)
}

/// Streams `url` to `path`, showing progress; returns the MD5 of what was written.
fn download(url: &str, path: &Path) -> Result<String> {
    let agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_body(Some(Duration::from_secs(600)))
        .build()
        .new_agent();
    let response = agent
        .get(url)
        .call()
        .with_context(|| format!("cannot download {url}"))?;
    let total = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bar = ProgressBar::new(total.unwrap_or(0));
    bar.set_style(
        ProgressStyle::with_template("{bytes}/{total_bytes} [{bar:30}] {bytes_per_sec} ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut body = response.into_body().into_reader();
    let mut file =
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut md5 = Md5::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = body
            .read(&mut buffer)
            .with_context(|| format!("download of {url} broke off"))?;
        if n == 0 {
            break;
        }
        md5.update(&buffer[..n]);
        file.write_all(&buffer[..n])?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(format!("{:x}", md5.finalize()))
}

fn unpack(archive: &Path, dest: &Path) -> Result<()> {
    let file = File::open(archive)?;
    tar::Archive::new(GzDecoder::new(BufReader::new(file)))
        .unpack(dest)
        .with_context(|| format!("cannot unpack {}", archive.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;

    /// A tar.gz holding `cifar-10-batches-bin/` with the committed sample's files.
    fn sample_archive() -> Vec<u8> {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/sample");
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            Default::default(),
        ));
        builder
            .append_dir_all("cifar-10-batches-bin", &sample)
            .unwrap();
        builder.into_inner().unwrap().finish().unwrap()
    }

    /// Serves `body` once per connection on a loopback port, `count` times.
    fn serve(body: Vec<u8>, count: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/cifar-10-binary.tar.gz",
            listener.local_addr().unwrap()
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().take(count) {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap() > 2 {
                    line.clear();
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(&body).unwrap();
            }
        });
        url
    }

    #[test]
    fn downloads_checks_md5_and_unpacks() {
        let archive = sample_archive();
        let md5 = format!("{:x}", Md5::digest(&archive));
        let url = serve(archive, 2);
        let dest = std::env::temp_dir().join(format!("cifar-burn-dl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dest);

        let err = fetch_and_unpack(&url, "00000000000000000000000000000000", &dest).unwrap_err();
        assert!(err.to_string().contains("is corrupt"), "{err}");
        assert!(
            !dest.join("cifar-10-binary.tar.gz.part").exists(),
            "bad download is removed"
        );

        let dir = fetch_and_unpack(&url, &md5, &dest).unwrap();
        assert_eq!(dir, dest.join("cifar-10-batches-bin"));
        assert_eq!(crate::data::CifarSet::test(&dir).unwrap().len(), 200);
        assert!(
            !dest.join("cifar-10-binary.tar.gz").exists(),
            "archive is removed once unpacked"
        );
        std::fs::remove_dir_all(&dest).unwrap();
    }

    #[test]
    fn an_unreachable_server_is_a_clear_error() {
        let dest = std::env::temp_dir().join(format!("cifar-burn-dl-none-{}", std::process::id()));
        // Port 9 on loopback: nothing listens there.
        let err = fetch_and_unpack("http://127.0.0.1:9/x.tar.gz", CIFAR10_MD5, &dest).unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot download http://127.0.0.1:9/x.tar.gz"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dest);
    }
}
