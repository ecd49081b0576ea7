//! A tiny internal service to watch webhooks arrive: prints each request it receives and
//! answers `200 {"received":true}`.
//!
//! `cargo run --example receiver -- 127.0.0.1:7001`

use std::{convert::Infallible, net::SocketAddr};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7001".to_string())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind(addr).await?;
    println!("receiver: listening on http://{addr}");
    loop {
        let (tcp, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service_fn(print_request))
                .await;
        });
    }
}

async fn print_request(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut out = format!("\n--> {} {}\n", parts.method, parts.uri);
    for (name, value) in &parts.headers {
        out.push_str(&format!(
            "    {name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    let text = String::from_utf8_lossy(&body);
    let shown: String = text.chars().take(2000).collect();
    out.push_str(&format!("    ({} bytes) {shown}\n", body.len()));
    print!("{out}");
    let mut resp = Response::new(Full::new(Bytes::from_static(b"{\"received\":true}\n")));
    resp.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}
