//! What the proxy lets a client negotiate: for the APIs it decodes, only versions it can decode
//! and that carry no broker address it does not rewrite; APIs that would deliver records around
//! the decrypting path are not offered at all. Every other API is forwarded byte for byte, so
//! its versions are the broker's.

use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::api_versions_response::ApiVersionsResponse;

/// (api, lowest, highest) the proxy handles. Produce stops at v9 and Fetch at v12: later ones
/// name topics by id (Fetch 13+, Produce 13) or carry leader endpoints (KIP-951: Produce 10+,
/// Fetch 16+), which would have to be rewritten too.
const DECODED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::ApiVersions, 0, 4),
    // v0 is followed by raw SASL tokens outside Kafka's framing; v1 wraps them in
    // SaslAuthenticate requests, which pass through like any request.
    (ApiKey::SaslHandshake, 1, 1),
];

/// APIs never offered: share groups fetch records outside Fetch (KIP-932).
const WITHHELD: &[ApiKey] = &[ApiKey::ShareFetch, ApiKey::ShareAcknowledge];

/// The range the proxy allows for `api`, if it restricts it.
pub fn decoded_range(api: i16) -> Option<(i16, i16)> {
    DECODED
        .iter()
        .find(|(key, _, _)| *key as i16 == api)
        .map(|&(_, lo, hi)| (lo, hi))
}

/// Narrows the broker's answer to what the proxy handles.
pub fn clamp(response: &mut ApiVersionsResponse) {
    response.api_keys.retain_mut(|v| {
        if WITHHELD.iter().any(|w| *w as i16 == v.api_key) {
            return false;
        }
        match decoded_range(v.api_key) {
            None => true,
            Some((lo, hi)) => {
                v.min_version = v.min_version.max(lo);
                v.max_version = v.max_version.min(hi);
                v.min_version <= v.max_version
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::api_versions_response::ApiVersion;

    use super::*;

    fn offered(key: ApiKey, min: i16, max: i16) -> ApiVersion {
        ApiVersion::default()
            .with_api_key(key as i16)
            .with_min_version(min)
            .with_max_version(max)
    }

    #[test]
    fn decoded_apis_are_narrowed_withheld_ones_dropped_others_kept() {
        let mut r = ApiVersionsResponse::default().with_api_keys(vec![
            offered(ApiKey::Produce, 0, 11),
            offered(ApiKey::Fetch, 0, 17),
            offered(ApiKey::ShareFetch, 0, 1),
            offered(ApiKey::JoinGroup, 0, 9),
            offered(ApiKey::DescribeCluster, 3, 4),
            offered(ApiKey::SaslHandshake, 0, 1),
        ]);
        clamp(&mut r);
        let got: Vec<_> = r
            .api_keys
            .iter()
            .map(|v| (v.api_key, v.min_version, v.max_version))
            .collect();
        assert_eq!(
            got,
            [
                (ApiKey::Produce as i16, 3, 9),
                (ApiKey::Fetch as i16, 4, 12),
                (ApiKey::JoinGroup as i16, 0, 9),
                (ApiKey::SaslHandshake as i16, 1, 1),
            ]
        );
    }
}
