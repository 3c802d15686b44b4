//! Outgoing FTP and FTPS (suppaftp on tokio, rustls for explicit TLS): a pool of
//! logged-in connections per connection definition, in passive mode.

use std::sync::Arc;
use std::time::Duration;

use shoal_common::objects::outgoing::{FtpOut, OutgoingDef};
use shoal_proto::connectors::v1 as pb;
use suppaftp::tokio::{AsyncRustlsConnector, AsyncRustlsFtpStream};
use suppaftp::{FtpError, Mode};
use tokio::io::AsyncReadExt;
use tokio::sync::{Mutex, Semaphore};

use crate::CallError;
use crate::kind::{Call, Connection, Kind, Reply};

/// Outgoing FTP and FTPS servers (definition type `ftp`): each operation of
/// [`FtpCallRequest`](pb::FtpCallRequest) (`listdir`, `readbytes`, `writebytes`, `remove`,
/// `makedir`, `removedir`, `rename`, `exists`, `getsize`) is a call; files that should
/// not be held whole go through `Connectors.FtpRead`/`FtpWrite`.
pub struct Ftp;

/// The fields of an FTP call (a file written is the body).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct OpFields {
    path: String,
    path2: String,
}

#[tonic::async_trait]
impl Kind for Ftp {
    fn name(&self) -> &'static str {
        "ftp"
    }
    fn display(&self) -> &'static str {
        "FTP"
    }
    fn types(&self) -> &'static [&'static str] {
        &["ftp"]
    }
    fn build(&self, def: &OutgoingDef) -> Result<Arc<dyn Connection>, String> {
        let OutgoingDef::Ftp(f) = def else {
            return Err(format!("a {} definition is not FTP", def.kind()));
        };
        Ok(Arc::new(FtpPool::new(f.clone())))
    }
}

#[tonic::async_trait]
impl Connection for FtpPool {
    async fn call(&self, call: Call) -> Result<Reply, CallError> {
        let f: OpFields = call.fields()?;
        let r = FtpPool::call(
            self,
            &pb::FtpCallRequest {
                connection: call.connection,
                op: call.op,
                path: f.path,
                path2: f.path2,
                data: call.body,
            },
        )
        .await?;
        Ok(Reply {
            fields: serde_json::json!({"names": r.names, "flag": r.flag, "size": r.size}),
            body: r.data,
        })
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Logged-in connections to one server.
pub struct FtpPool {
    def: FtpOut,
    idle: Mutex<Vec<AsyncRustlsFtpStream>>,
    permits: Arc<Semaphore>,
}

fn ftp_err(def: &FtpOut, what: &str, e: FtpError) -> CallError {
    match e {
        FtpError::ConnectionError(io) => CallError::unavailable(format!(
            "cannot reach the FTP server {}:{}: {io}",
            def.host, def.port
        )),
        FtpError::UnexpectedResponse(r) => {
            let text = String::from_utf8_lossy(&r.body).trim().to_owned();
            if r.status.code() == 530 {
                CallError::unauthorized(format!("the FTP server refused the login: {text}"))
            } else {
                CallError::remote(format!("{what}: {text}"))
            }
        }
        FtpError::SecureError(s) => CallError::unavailable(format!("FTPS handshake failed: {s}")),
        other => CallError::remote(format!("{what}: {other}")),
    }
}

impl FtpPool {
    pub fn new(def: FtpOut) -> FtpPool {
        let permits = Arc::new(Semaphore::new(def.pool_size as usize));
        FtpPool {
            def,
            idle: Mutex::new(Vec::new()),
            permits,
        }
    }

    fn tls(&self) -> Result<AsyncRustlsConnector, CallError> {
        use tokio_rustls::rustls;
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(ca) = &self.def.ca_file {
            use rustls_pki_types::pem::PemObject;
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(ca)
                .map_err(|e| CallError::bad_request(format!("cannot read ca_file {ca}: {e}")))?;
            for c in certs {
                let c = c.map_err(|e| CallError::bad_request(format!("ca_file {ca}: {e}")))?;
                roots
                    .add(c)
                    .map_err(|e| CallError::bad_request(format!("ca_file {ca}: {e}")))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CallError::unavailable(format!("TLS setup failed: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(AsyncRustlsConnector::from(
            tokio_rustls::TlsConnector::from(Arc::new(config)),
        ))
    }

    async fn connect(&self) -> Result<AsyncRustlsFtpStream, CallError> {
        let d = &self.def;
        let t = Duration::from_secs_f64(d.timeout);
        let addr = format!("{}:{}", d.host, d.port);
        let connect = async {
            let mut s = AsyncRustlsFtpStream::connect(addr.as_str())
                .await
                .map_err(|e| ftp_err(d, "connect", e))?;
            if d.tls {
                s = s
                    .into_secure(self.tls()?, &d.host)
                    .await
                    .map_err(|e| ftp_err(d, "AUTH TLS", e))?;
            }
            s.login(d.username.as_str(), d.password.as_str())
                .await
                .map_err(|e| ftp_err(d, "login", e))?;
            s.set_mode(Mode::Passive);
            s.transfer_type(suppaftp::types::FileType::Binary)
                .await
                .map_err(|e| ftp_err(d, "TYPE I", e))?;
            Ok::<_, CallError>(s)
        };
        tokio::time::timeout(t, connect).await.unwrap_or_else(|_| {
            Err(CallError::timeout(format!(
                "the FTP server {addr} did not answer within {} s",
                d.timeout
            )))
        })
    }

    /// A logged-in connection from the pool (or a new one), with the permit that
    /// bounds the pool; give it back with [`FtpPool::checkin`].
    async fn checkout(
        &self,
    ) -> Result<(tokio::sync::OwnedSemaphorePermit, AsyncRustlsFtpStream), CallError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| CallError::unavailable("the FTP pool is closed"))?;
        let pooled = self.idle.lock().await.pop();
        let s = match pooled {
            Some(s) => s,
            None => self.connect().await?,
        };
        Ok((permit, s))
    }

    /// Returns a connection to the pool unless the failure was the connection's own.
    async fn checkin<T>(&self, s: AsyncRustlsFtpStream, out: &Result<T, CallError>) {
        let keep = match out {
            Ok(_) => true,
            Err(e) => e.code == shoal_common::ErrorCode::RemoteError,
        };
        if keep {
            self.idle.lock().await.push(s);
        }
    }

    fn timeout(&self, what: &str) -> CallError {
        CallError::timeout(format!("{what} ran past {} s", self.def.timeout))
    }

    /// One operation on a pooled connection.
    pub async fn call(&self, r: &pb::FtpCallRequest) -> Result<pb::FtpCallResponse, CallError> {
        let (_permit, mut s) = self.checkout().await?;
        let t = Duration::from_secs_f64(self.def.timeout);
        let out = match tokio::time::timeout(t, op(&self.def, &mut s, r)).await {
            Ok(o) => o,
            Err(_) => Err(self.timeout(&format!("{} {}", r.op, r.path))),
        };
        self.checkin(s, &out).await;
        out
    }

    /// Streams `path` into `tx` in chunks of 256 KB; the file is never held whole. Each
    /// chunk must arrive within the connection's timeout.
    pub async fn download(
        &self,
        path: &str,
        tx: tokio::sync::mpsc::Sender<Result<pb::FtpChunk, tonic::Status>>,
    ) -> Result<u64, CallError> {
        let (_permit, mut s) = self.checkout().await?;
        let t = Duration::from_secs_f64(self.def.timeout);
        let what = format!("readbytes {path}");
        let out = async {
            let mut stream = tokio::time::timeout(t, s.retr_as_stream(path))
                .await
                .map_err(|_| self.timeout(&what))?
                .map_err(|e| ftp_err(&self.def, &what, e))?;
            let mut total = 0u64;
            loop {
                let mut buf = vec![0u8; 256 * 1024];
                let n = tokio::time::timeout(t, stream.read(&mut buf))
                    .await
                    .map_err(|_| self.timeout(&what))?
                    .map_err(|io| CallError::unavailable(format!("reading {path} failed: {io}")))?;
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                total += n as u64;
                let chunk = pb::FtpChunk {
                    data: buf,
                    ..Default::default()
                };
                if tx.send(Ok(chunk)).await.is_err() {
                    return Err(CallError::unavailable("the caller went away"));
                }
            }
            stream
                .finish()
                .await
                .map_err(|e| ftp_err(&self.def, &what, e))?;
            Ok(total)
        }
        .await;
        self.checkin(s, &out).await;
        out
    }

    /// Writes the chunks of `chunks` to `path` as they arrive.
    pub async fn upload(
        &self,
        path: &str,
        first: Vec<u8>,
        mut chunks: tonic::Streaming<pb::FtpChunk>,
    ) -> Result<u64, CallError> {
        use tokio::io::AsyncWriteExt;
        let (_permit, mut s) = self.checkout().await?;
        let t = Duration::from_secs_f64(self.def.timeout);
        let what = format!("writebytes {path}");
        let out = async {
            let mut stream = tokio::time::timeout(t, s.put_with_stream(path))
                .await
                .map_err(|_| self.timeout(&what))?
                .map_err(|e| ftp_err(&self.def, &what, e))?;
            let io =
                |e: std::io::Error| CallError::unavailable(format!("writing {path} failed: {e}"));
            let mut total = first.len() as u64;
            stream.write_all(&first).await.map_err(io)?;
            loop {
                let next = tokio::time::timeout(t, chunks.message())
                    .await
                    .map_err(|_| self.timeout(&what))?
                    .map_err(|e| {
                        CallError::unavailable(format!("the upload broke off: {}", e.message()))
                    })?;
                let Some(c) = next else { break };
                total += c.data.len() as u64;
                stream.write_all(&c.data).await.map_err(io)?;
            }
            stream
                .finish()
                .await
                .map_err(|e| ftp_err(&self.def, &what, e))?;
            Ok(total)
        }
        .await;
        self.checkin(s, &out).await;
        out
    }
}

async fn op(
    d: &FtpOut,
    s: &mut AsyncRustlsFtpStream,
    r: &pb::FtpCallRequest,
) -> Result<pb::FtpCallResponse, CallError> {
    let path = r.path.as_str();
    let what = format!("{} {path}", r.op);
    let e = |err| ftp_err(d, &what, err);
    let mut out = pb::FtpCallResponse::default();
    match r.op.as_str() {
        "listdir" => {
            let dir = if path.is_empty() { None } else { Some(path) };
            let mut names: Vec<String> = s
                .nlst(dir)
                .await
                .map_err(e)?
                .into_iter()
                .map(|n| n.rsplit('/').next().unwrap_or(&n).to_owned())
                .filter(|n| !n.is_empty() && n != "." && n != "..")
                .collect();
            names.sort();
            out.names = names;
        }
        "readbytes" => {
            let mut stream = s.retr_as_stream(path).await.map_err(e)?;
            let mut buf = Vec::new();
            stream
                .read_to_end(&mut buf)
                .await
                .map_err(|io| CallError::unavailable(format!("reading {path} failed: {io}")))?;
            stream
                .finish()
                .await
                .map_err(|err| ftp_err(d, &what, err))?;
            out.size = buf.len() as u64;
            out.data = buf;
        }
        "writebytes" => {
            let mut reader = std::io::Cursor::new(r.data.as_slice());
            out.size = s.put_file(path, &mut reader).await.map_err(e)?;
        }
        "remove" => s.rm(path).await.map_err(e)?,
        "makedir" => s.mkdir(path).await.map_err(e)?,
        "removedir" => s.rmdir(path).await.map_err(e)?,
        "rename" => s.rename(path, r.path2.as_str()).await.map_err(e)?,
        "getsize" => out.size = s.size(path).await.map_err(e)? as u64,
        "exists" | "isdir" | "isfile" => {
            let is_file = s.size(path).await.is_ok();
            let is_dir = if is_file {
                false
            } else {
                let here = s.pwd().await.map_err(|err| ftp_err(d, "PWD", err))?;
                let ok = s.cwd(path).await.is_ok();
                if ok {
                    s.cwd(here.as_str())
                        .await
                        .map_err(|err| ftp_err(d, "CWD", err))?;
                }
                ok
            };
            out.flag = match r.op.as_str() {
                "isdir" => is_dir,
                "isfile" => is_file,
                _ => is_file || is_dir,
            };
        }
        other => {
            return Err(CallError::bad_request(format!(
                "'{other}' is not an FTP operation (listdir, readbytes, writebytes, remove, \
                 makedir, removedir, rename, exists, isdir, isfile, getsize)"
            )));
        }
    }
    Ok(out)
}
