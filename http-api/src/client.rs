//! Who a request comes from: the address rate limits count by, and logs show.

use std::net::{IpAddr, Ipv4Addr};

use actix_web::{web, HttpRequest};

use infra::settings::ProxySettings;

/// The address of the client a request comes from. Behind nginx every peer is nginx, which
/// passes the address it saw as `X-Real-IP`: that header is believed only from a trusted proxy
/// (`TRUSTED_PROXIES`), since anybody else can write it. `X-Forwarded-For` is never read: its
/// first entry is whatever the client put there.
pub fn address(req: &HttpRequest) -> IpAddr {
    let peer = req
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |peer| peer.ip());
    let trusted = match req.app_data::<web::Data<ProxySettings>>() {
        Some(settings) => settings.is_trusted(peer),
        None => ProxySettings::default().is_trusted(peer),
    };
    if !trusted {
        return peer;
    }
    req.headers()
        .get("x-real-ip")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn request(peer: &str, real_ip: Option<&str>) -> HttpRequest {
        let mut request = TestRequest::default().peer_addr(peer.parse().unwrap());
        if let Some(real_ip) = real_ip {
            request = request.insert_header(("X-Real-IP", real_ip));
        }
        request
            .insert_header(("X-Forwarded-For", "6.6.6.6"))
            .to_http_request()
    }

    #[test]
    fn the_proxy_is_believed_and_nobody_else() {
        let via_proxy = request("127.0.0.1:5000", Some("203.0.113.7"));
        assert_eq!(
            address(&via_proxy),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        let direct = request("198.51.100.2:5000", Some("203.0.113.7"));
        assert_eq!(address(&direct), "198.51.100.2".parse::<IpAddr>().unwrap());
        // Never the client's own X-Forwarded-For.
        let no_header = request("127.0.0.1:5000", None);
        assert_eq!(address(&no_header), "127.0.0.1".parse::<IpAddr>().unwrap());
        let garbage = request("127.0.0.1:5000", Some("not an address"));
        assert_eq!(address(&garbage), "127.0.0.1".parse::<IpAddr>().unwrap());
    }
}
