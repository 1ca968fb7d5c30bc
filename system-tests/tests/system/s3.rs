//! An S3-compatible server of a test's own (s3s-fs, from crates.io), over HTTP on a port of
//! its own, keeping objects in a temporary folder: `MEDIA_STORE=s3` is tested against a real
//! S3 protocol peer, signatures and all, with no service to install.

use std::path::Path;

use hyper_util::rt::TokioIo;
use infra::settings::{secret, S3Connection};
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio_util::sync::CancellationToken;

const ACCESS_KEY: &str = "douyin-test";
const SECRET_KEY: &str = "douyin-test-secret";

pub struct S3Server {
    endpoint: String,
    root: tempfile::TempDir,
    stop: CancellationToken,
}

impl S3Server {
    /// Serves until dropped, with `bucket` made.
    pub async fn start(bucket: &str) -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(bucket)).unwrap();
        let mut builder =
            S3ServiceBuilder::new(s3s_fs::FileSystem::new(root.path()).expect("a folder"));
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        tokio::spawn({
            let stop = stop.clone();
            async move {
                loop {
                    let stream = tokio::select! {
                        accepted = listener.accept() => accepted.unwrap().0,
                        _ = stop.cancelled() => return,
                    };
                    let service = service.clone();
                    tokio::spawn(
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service),
                    );
                }
            }
        });
        Self {
            endpoint,
            root,
            stop,
        }
    }

    pub fn connection(&self) -> S3Connection {
        S3Connection {
            endpoint: self.endpoint.clone(),
            region: "us-east-1".into(),
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: secret(SECRET_KEY),
        }
    }

    /// The keys of the objects in `bucket`, as the server keeps them.
    pub fn objects(&self, bucket: &str) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, found: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(base, &path, found);
                } else if !path.to_string_lossy().contains(".s3s") {
                    let key = path
                        .strip_prefix(base)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    found.push(key);
                }
            }
        }
        let base = self.root.path().join(bucket);
        let mut found = vec![];
        walk(&base, &base, &mut found);
        found
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
