//! Stored media (videos and their covers) behind `object_store`: a local folder by default,
//! any S3-compatible store by configuration. Keys are made by the server.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, GetResult, ObjectStore};
use tokio::io::AsyncWriteExt;

use infra::settings::{expose, MediaBackend, MediaSettings};

#[derive(Clone)]
pub struct MediaStore {
    store: Arc<dyn ObjectStore>,
}

impl MediaStore {
    pub fn connect(settings: &MediaSettings) -> anyhow::Result<Self> {
        let store: Arc<dyn ObjectStore> = match settings.media_store {
            MediaBackend::Local => {
                std::fs::create_dir_all(&settings.media_dir)?;
                Arc::new(LocalFileSystem::new_with_prefix(&settings.media_dir)?)
            }
            MediaBackend::S3 => {
                let bucket = settings
                    .media_bucket
                    .as_deref()
                    .ok_or_else(|| anyhow::anyhow!("MEDIA_STORE=s3 needs MEDIA_BUCKET"))?;
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Some(connection) = &settings.s3_connection {
                    builder = builder
                        .with_endpoint(&connection.endpoint)
                        .with_allow_http(connection.endpoint.starts_with("http://"))
                        .with_region(&connection.region)
                        .with_access_key_id(&connection.access_key_id)
                        .with_secret_access_key(expose(&connection.secret_access_key));
                }
                Arc::new(builder.build()?)
            }
        };
        Ok(Self { store })
    }

    /// Copies a local file into the store under `key`, in parts, never whole in memory.
    pub async fn put_file(&self, key: &str, file: &Path) -> anyhow::Result<()> {
        let mut source = tokio::fs::File::open(file).await?;
        let mut sink = BufWriter::new(self.store.clone(), Key::from(key));
        match tokio::io::copy(&mut source, &mut sink).await {
            Ok(_) => Ok(sink.shutdown().await?),
            Err(error) => {
                sink.abort().await?;
                Err(error.into())
            }
        }
    }

    /// Removes an object; one that is already gone is fine.
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match self.store.delete(&Key::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Reads an object, or the bytes `range` of it; None when there is no such object.
    pub async fn get(
        &self,
        key: &str,
        range: Option<GetRange>,
    ) -> Result<Option<GetResult>, object_store::Error> {
        let options = GetOptions {
            range,
            ..GetOptions::default()
        };
        match self.store.get_opts(&Key::from(key), options).await {
            Ok(result) => Ok(Some(result)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The objects stored under `prefix` (a folder such as `videos`): their keys and when
    /// they were stored.
    pub async fn list(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, DateTime<Utc>)>, object_store::Error> {
        self.store
            .list(Some(&Key::from(prefix)))
            .map_ok(|meta| (meta.location.to_string(), meta.last_modified))
            .try_collect()
            .await
    }

    /// The size of an object in bytes; None when there is no such object.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, object_store::Error> {
        match self.store.head(&Key::from(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }
}
