//! A real OpenSSH sshd on loopback standing in for one built machine: it
//! holds the machine's host key from the secrets file and answers as the
//! machine would (its hostname, its status file, cloud-init's result),
//! from a private mount and UTS namespace so the host is not changed.
//!
//! Needs root (namespaces, sshd's privilege separation) and the sshd that
//! scripts/test-deps unpacks from Debian's openssh-server.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cache_dir;

/// The unpacked sshd and its library folder.
fn sshd_binary() -> (PathBuf, PathBuf) {
    let root = std::env::var_os("NODEIMG_SSHD_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("sshd"));
    let bin = root.join("usr/sbin/sshd");
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/test-deps",
        bin.display()
    );
    (bin, root.join("usr/lib/x86_64-linux-gnu"))
}

/// A port on 127.0.0.1 that nothing listens on (at the time asked).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Sshd {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// What the stand-in machine holds besides its sshd.
pub struct Machine<'a> {
    pub hostname: &'a str,
    /// The login name the profile uses (ssh.user); it logs in as root.
    pub user: &'a str,
    /// The host key, in OpenSSH's private key format.
    pub host_key: &'a str,
    /// The public key the test logs in with.
    pub authorized_key: &'a str,
    /// Files under /var/lib (e.g. `nodeimg/status`), made in the
    /// namespace's own /var/lib (a folder of the test, changeable live).
    pub var_lib: &'a [(&'a str, &'a str)],
    /// Commands under /usr/local/bin (stand-ins), made executable.
    pub local_bin: &'a [(&'a str, &'a str)],
    /// Files at their absolute paths under /etc or /usr/local, as a seed
    /// writes them; the host's own stay untouched below an overlay.
    pub files: &'a [(String, Vec<u8>)],
}

impl Sshd {
    pub fn start(m: &Machine) -> Sshd {
        let (bin, libs) = sshd_binary();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let port = free_port();
        let write = |rel: &str, text: &str, mode: u32| {
            use std::os::unix::fs::PermissionsExt;
            let p = d.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, text).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        };
        write("host_key", m.host_key, 0o600);
        write(
            "authorized_keys",
            &format!("{}\n", m.authorized_key.trim()),
            0o600,
        );
        // sshd's privilege separation user, and the profile's user as a
        // second name of root (sessions run as uid 0).
        let mut passwd = fs::read_to_string("/etc/passwd").unwrap();
        passwd.push_str("sshd:x:64999:65534::/run/sshd:/usr/sbin/nologin\n");
        passwd.push_str(&format!("{}:x:0:0::/root:/bin/sh\n", m.user));
        write("passwd", &passwd, 0o644);
        for (rel, text) in m.var_lib {
            write(&format!("var-lib/{rel}"), text, 0o644);
        }
        fs::create_dir_all(d.join("var-lib")).unwrap();
        for (name, text) in m.local_bin {
            write(&format!("root/usr/local/bin/{name}"), text, 0o755);
        }
        for (path, bytes) in m.files {
            assert!(
                path.starts_with("/etc/") || path.starts_with("/usr/local/"),
                "{path}: only /etc and /usr/local are overlaid"
            );
            let p = d.join("root").join(path.trim_start_matches('/'));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, bytes).unwrap();
        }
        fs::create_dir_all(d.join("root")).unwrap();
        write(
            "sshd_config",
            &format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\nPidFile none\n",
                d = d.display()
            ),
            0o600,
        );
        // /etc and /usr/local under overlays (upper layers on the private
        // /run), the machine's files copied in; /var/lib the test's folder.
        let run = format!(
            "set -e\nmount --make-rprivate /\nmount -t tmpfs -o mode=0755 none /run\nmkdir -m 0755 /run/sshd\n\
             for top in etc usr/local; do\n\
               o=/run/overlay/$(echo $top | tr / _); mkdir -p $o/upper $o/work\n\
               mount -t overlay overlay -o lowerdir=/$top,upperdir=$o/upper,workdir=$o/work /$top\n\
             done\n\
             mount --bind {d}/passwd /etc/passwd\nmount --bind {d}/var-lib /var/lib\n\
             cp -r {d}/root/. /\nhostname {host}\n\
             exec env LD_LIBRARY_PATH={libs} {bin} -D -e -f {d}/sshd_config\n",
            d = d.display(),
            host = m.hostname,
            libs = libs.display(),
            bin = bin.display()
        );
        write("run.sh", &run, 0o700);
        let log = fs::File::create(d.join("sshd.log")).unwrap();
        let child = Command::new("unshare")
            .args(["--mount", "--uts", "sh"])
            .arg(d.join("run.sh"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run unshare");
        let mut sshd = Sshd { child, port, dir };
        sshd.wait_listening();
        sshd
    }

    fn wait_listening(&mut self) {
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sshd ended ({status}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("sshd did not listen:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// `NAME=127.0.0.1:PORT` for `--address`.
    pub fn address(&self, machine: &str) -> String {
        format!("{machine}=127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
