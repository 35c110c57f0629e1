//! The AWS KMS KeyProvider, behind the `aws-kms` cargo feature.
//!
//! The TEK is a symmetric KMS key (`SYMMETRIC_DEFAULT`, `ENCRYPT_DECRYPT`), referred to by an
//! alias (`alias/...`) or key id/ARN. DEKs come from `GenerateDataKey` (AES_256) with an
//! encryption context of topic, partition and DEK version, so KMS itself refuses to unwrap an
//! EDEK for any other place; `Decrypt` and `ReEncrypt` pass the same context. Rotation is
//! `RotateKeyOnDemand` (automatic yearly rotation is enabled at creation); AWS keeps every
//! backing key, so old EDEKs keep decrypting. The TEK "version" reported here is the number of
//! rotations plus one (AWS does not expose backing-key versions in ciphertexts).
//!
//! Credentials: static ones (from a Secret), web identity with a token from a [`JwtSource`]
//! (exchanged with STS `AssumeRoleWithWebIdentity`, again whenever the credentials expire), or
//! else the SDK's default chain (environment, profile, web identity / IRSA, instance metadata);
//! `endpoint` overrides the URL (tests, VPC endpoints).

use aws_config::BehaviorVersion;
use aws_sdk_kms::Client;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeyState};

use std::sync::Arc;

use crate::identity::JwtSource;
use crate::provider::{
    DekContext, Edek, KeyProvider, ProviderError, TekInfo, TekManager, TekOwner,
};
use crate::secret::KeyMaterial;
use zeroize::Zeroizing;

const BACKEND: &str = "aws-kms";

#[derive(Debug, Clone, Default)]
pub struct AwsKmsSettings {
    /// `None`: the default chain's region.
    pub region: Option<String>,
    /// `None`: the regional AWS endpoint.
    pub endpoint: Option<String>,
    /// Static credentials (the operator reads them from a Secret).
    pub credentials: Option<AwsStaticCredentials>,
    /// Web identity: a token exchanged with STS for a role's credentials. With neither this
    /// nor `credentials`: the SDK's default chain (IRSA, instance role, environment).
    pub web_identity: Option<AwsWebIdentitySettings>,
}

/// A role assumed with a service-account token.
#[derive(Clone)]
pub struct AwsWebIdentitySettings {
    pub role_arn: String,
    pub token: Arc<dyn JwtSource>,
    /// `None`: the region's STS endpoint.
    pub sts_endpoint: Option<String>,
    /// Names the session in the role's audit trail (e.g. the namespace and connection).
    pub session_name: String,
}

impl std::fmt::Debug for AwsWebIdentitySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsWebIdentitySettings")
            .field("role_arn", &self.role_arn)
            .field("token", &self.token.describe())
            .field("sts_endpoint", &self.sts_endpoint)
            .field("session_name", &self.session_name)
            .finish()
    }
}

/// Credentials for a role, from STS, for a token asked of the source each time the SDK's
/// identity cache finds the previous ones expired.
#[derive(Debug)]
struct WebIdentityCredentials {
    sts: aws_sdk_sts::Client,
    settings: AwsWebIdentitySettings,
}

impl aws_sdk_kms::config::ProvideCredentials for WebIdentityCredentials {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        use aws_credential_types::provider::error::CredentialsError;
        aws_credential_types::provider::future::ProvideCredentials::new(async move {
            // A token that cannot be had, or that STS refuses (4xx), is a configuration to
            // fix, not an outage to retry: `classify` reports it as AccessDenied.
            let token = self
                .settings
                .token
                .jwt()
                .await
                .map_err(CredentialsError::invalid_configuration)?;
            let assumed = self
                .sts
                .assume_role_with_web_identity()
                .role_arn(&self.settings.role_arn)
                .role_session_name(&self.settings.session_name)
                .web_identity_token(token.as_str())
                .send()
                .await
                .map_err(|e| {
                    let refused = matches!(&e, SdkError::ServiceError(s) if s.raw().status().is_client_error());
                    let detail = aws_sdk_sts::error::DisplayErrorContext(&e).to_string();
                    if refused {
                        CredentialsError::invalid_configuration(detail)
                    } else {
                        CredentialsError::provider_error(detail)
                    }
                })?;
            let c = assumed
                .credentials()
                .ok_or_else(|| CredentialsError::unhandled("STS returned no credentials"))?;
            let expires = std::time::SystemTime::try_from(*c.expiration()).ok();
            Ok(aws_sdk_kms::config::Credentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().to_owned()),
                expires,
                "kafka-e2ee-web-identity",
            ))
        })
    }
}

/// An access key, held zeroized; its Debug output shows only the key id.
#[derive(Clone)]
pub struct AwsStaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
    pub session_token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for AwsStaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsStaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

pub struct AwsKms {
    client: Client,
}

impl AwsKms {
    pub async fn new(settings: &AwsKmsSettings) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &settings.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(endpoint) = &settings.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(c) = &settings.credentials {
            loader = loader.credentials_provider(aws_sdk_kms::config::Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.to_string(),
                c.session_token.as_ref().map(|t| t.to_string()),
                None,
                "kafka-e2ee-secret",
            ));
        } else if let Some(web) = &settings.web_identity {
            // AssumeRoleWithWebIdentity is unsigned: STS needs no credentials of ours.
            let mut sts = aws_sdk_sts::Config::builder()
                .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest());
            if let Some(region) = &settings.region {
                sts = sts.region(aws_sdk_sts::config::Region::new(region.clone()));
            }
            if let Some(endpoint) = &web.sts_endpoint {
                sts = sts.endpoint_url(endpoint);
            }
            loader = loader.credentials_provider(WebIdentityCredentials {
                sts: aws_sdk_sts::Client::from_conf(sts.build()),
                settings: web.clone(),
            });
        }
        Self {
            client: Client::new(&loader.load().await),
        }
    }

    pub fn from_client(client: Client) -> Self {
        Self { client }
    }

    async fn key_id(&self, tek: &str) -> Result<String, ProviderError> {
        self.client
            .describe_key()
            .key_id(tek)
            .send()
            .await
            .map_err(|e| classify(e, tek, None))?
            .key_metadata()
            .map(|m| m.key_id().to_owned())
            .ok_or_else(|| ProviderError::Unavailable {
                backend: BACKEND,
                tek: tek.to_owned(),
                reason: "DescribeKey returned no metadata".into(),
            })
    }

    /// Creates `tek` (an alias) if absent, tagged `managed-by` and, given an owner, with the
    /// owner's uid and object.
    async fn create(
        &self,
        tek: &str,
        owner: Option<&TekOwner<'_>>,
    ) -> Result<TekInfo, ProviderError> {
        match self.info(tek).await {
            Err(ProviderError::NotFound { .. }) => {}
            other => return other,
        }
        if !tek.starts_with("alias/") {
            return Err(ProviderError::Misconfigured {
                backend: BACKEND,
                reason: format!("TEK '{tek}' does not exist, and only an alias/... can be created"),
            });
        }
        let created = self
            .client
            .create_key()
            .description(format!("kafka-e2ee topic encryption key {tek}"))
            .set_tags(Some(tags(owner)?))
            .send()
            .await
            .map_err(|e| classify(e, tek, None))?;
        let key_id = created
            .key_metadata()
            .map(|m| m.key_id().to_owned())
            .ok_or_else(|| ProviderError::Unavailable {
                backend: BACKEND,
                tek: tek.to_owned(),
                reason: "CreateKey returned no key id".into(),
            })?;
        self.client
            .enable_key_rotation()
            .key_id(&key_id)
            .send()
            .await
            .map_err(|e| classify(e, tek, None))?;
        match self
            .client
            .create_alias()
            .alias_name(tek)
            .target_key_id(&key_id)
            .send()
            .await
        {
            Ok(_) => {}
            // Another creator won the race: use its key, retire ours (7-day waiting period).
            Err(e)
                if e.as_service_error().and_then(|s| s.code())
                    == Some("AlreadyExistsException") =>
            {
                let _ = self
                    .client
                    .schedule_key_deletion()
                    .key_id(&key_id)
                    .pending_window_in_days(7)
                    .send()
                    .await;
            }
            Err(e) => return Err(classify(e, tek, None)),
        }
        self.info(tek).await
    }

    /// Schedules `tek`'s deletion; given an owner, only if its tags name that owner (or none:
    /// keys created before owners were tagged).
    async fn delete(&self, tek: &str, owner: Option<&TekOwner<'_>>) -> Result<(), ProviderError> {
        let key_id = match self.key_id(tek).await {
            Err(ProviderError::NotFound { .. }) => return Ok(()),
            other => other?,
        };
        if let Some(owner) = owner {
            self.check_owner(tek, &key_id, owner).await?;
        }
        // KMS never deletes at once: 7 days (its minimum) to cancel a mistake.
        match self
            .client
            .schedule_key_deletion()
            .key_id(&key_id)
            .pending_window_in_days(7)
            .send()
            .await
        {
            Ok(_) => {}
            // Already pending deletion: what we asked for.
            Err(e)
                if e.as_service_error().and_then(|s| s.code())
                    == Some("KMSInvalidStateException") => {}
            Err(e) => return Err(classify(e, tek, None)),
        }
        if tek.starts_with("alias/") {
            // The alias would otherwise keep pointing at a key that is going away, and block a
            // new topic of the same name from getting a fresh key.
            match self.client.delete_alias().alias_name(tek).send().await {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error().and_then(|s| s.code()) == Some("NotFoundException") => {
                }
                Err(e) => return Err(classify(e, tek, None)),
            }
        }
        Ok(())
    }

    async fn check_owner(
        &self,
        tek: &str,
        key_id: &str,
        owner: &TekOwner<'_>,
    ) -> Result<(), ProviderError> {
        let listed = self
            .client
            .list_resource_tags()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| classify(e, tek, None))?;
        let tagged = |key: &str| {
            listed
                .tags()
                .iter()
                .find(|t| t.tag_key() == key)
                .map(|t| t.tag_value().to_owned())
        };
        match tagged(OWNER_UID_TAG) {
            Some(uid) if uid != owner.uid => Err(ProviderError::NotOwned {
                backend: BACKEND,
                tek: tek.to_owned(),
                owner: tagged(OWNER_OBJECT_TAG).unwrap_or(uid),
            }),
            _ => Ok(()),
        }
    }

    async fn info(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        let described = self
            .client
            .describe_key()
            .key_id(tek)
            .send()
            .await
            .map_err(|e| classify(e, tek, None))?;
        let metadata = described
            .key_metadata()
            .ok_or_else(|| ProviderError::Unavailable {
                backend: BACKEND,
                tek: tek.to_owned(),
                reason: "DescribeKey returned no metadata".into(),
            })?;
        match metadata.key_state() {
            Some(KeyState::Enabled) | None => {}
            Some(state) => {
                return Err(ProviderError::Disabled {
                    backend: BACKEND,
                    tek: format!("{tek} (state {})", state.as_str()),
                });
            }
        }
        let rotations = self
            .client
            .list_key_rotations()
            .key_id(metadata.key_id())
            .send()
            .await
            .map_err(|e| classify(e, tek, None))?
            .rotations()
            .len();
        Ok(TekInfo {
            tek: tek.to_owned(),
            latest_version: Some((rotations + 1).to_string()),
            min_decryption_version: None,
        })
    }
}

fn context_label(context: DekContext<'_>) -> String {
    format!(
        "{}/{} v{}",
        context.topic, context.partition, context.version
    )
}

/// The tags that mark a TEK as created for an EncryptedTopic, and which.
const OWNER_UID_TAG: &str = "kafka-e2ee.io/owner-uid";
const OWNER_OBJECT_TAG: &str = "kafka-e2ee.io/owner";

fn tags(owner: Option<&TekOwner<'_>>) -> Result<Vec<aws_sdk_kms::types::Tag>, ProviderError> {
    let tag = |key: &str, value: &str| {
        aws_sdk_kms::types::Tag::builder()
            .tag_key(key)
            .tag_value(value)
            .build()
            .map_err(|e| ProviderError::Misconfigured {
                backend: BACKEND,
                reason: e.to_string(),
            })
    };
    let mut out = vec![tag("managed-by", "kafka-e2ee")?];
    if let Some(owner) = owner {
        out.push(tag(OWNER_UID_TAG, owner.uid)?);
        out.push(tag(OWNER_OBJECT_TAG, owner.object)?);
    }
    Ok(out)
}

/// Whether the call failed because credentials could not be had for a reason that retrying
/// will not fix (no token, STS refused it).
fn refused_credentials(error: &(dyn std::error::Error + 'static)) -> bool {
    use aws_credential_types::provider::error::CredentialsError;
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            return matches!(
                c,
                CredentialsError::InvalidConfiguration(_)
                    | CredentialsError::CredentialsNotLoaded(_)
            );
        }
        cause = e.source();
    }
    false
}

/// AWS error codes by class. (moto answers undecryptable ciphertext with AccessDenied where
/// AWS says InvalidCiphertext: both are refusals, and the DEK commitment check stays in force.)
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug + 'static>(
    error: SdkError<E, R>,
    tek: &str,
    context: Option<DekContext<'_>>,
) -> ProviderError {
    let tek = tek.to_owned();
    if refused_credentials(&error) {
        return ProviderError::AccessDenied {
            backend: BACKEND,
            tek,
        };
    }
    let SdkError::ServiceError(service) = &error else {
        return ProviderError::Unavailable {
            backend: BACKEND,
            tek,
            reason: aws_sdk_kms::error::DisplayErrorContext(&error).to_string(),
        };
    };
    let code = service.err().code().unwrap_or_default();
    let message = service.err().message().unwrap_or_default().to_owned();
    let detail = if code.is_empty() {
        aws_sdk_kms::error::DisplayErrorContext(&error).to_string()
    } else {
        format!("{code}: {message}")
    };
    match code {
        "NotFoundException" => ProviderError::NotFound {
            backend: BACKEND,
            tek,
        },
        "AccessDeniedException" => ProviderError::AccessDenied {
            backend: BACKEND,
            tek,
        },
        "DisabledException" | "KMSInvalidStateException" => ProviderError::Disabled {
            backend: BACKEND,
            tek,
        },
        "ThrottlingException" | "LimitExceededException" => ProviderError::Throttled {
            backend: BACKEND,
            tek,
        },
        "InvalidCiphertextException" | "IncorrectKeyException" => {
            ProviderError::InvalidCiphertext {
                backend: BACKEND,
                tek,
                context: context.map(context_label).unwrap_or_default(),
            }
        }
        "KMSInternalException" | "DependencyTimeoutException" | "KeyUnavailableException" => {
            ProviderError::Unavailable {
                backend: BACKEND,
                tek,
                reason: detail,
            }
        }
        _ => ProviderError::Misconfigured {
            backend: BACKEND,
            reason: format!("TEK '{tek}': {detail}"),
        },
    }
}

fn invalid(tek: &str, context: DekContext<'_>) -> ProviderError {
    ProviderError::InvalidCiphertext {
        backend: BACKEND,
        tek: tek.to_owned(),
        context: context_label(context),
    }
}

impl KeyProvider for AwsKms {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn generate_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
    ) -> Result<(KeyMaterial, Edek), ProviderError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(tek)
            .key_spec(DataKeySpec::Aes256)
            .encryption_context("topic", context.topic)
            .encryption_context("partition", context.partition.to_string())
            .encryption_context("version", context.version.to_string())
            .send()
            .await
            .map_err(|e| classify(e, tek, Some(context)))?;
        let (Some(plaintext), Some(wrapped)) = (out.plaintext, out.ciphertext_blob) else {
            return Err(ProviderError::Unavailable {
                backend: BACKEND,
                tek: tek.to_owned(),
                reason: "GenerateDataKey returned no key".into(),
            });
        };
        Ok((
            KeyMaterial::from_vec(plaintext.into_inner()),
            Edek(wrapped.into_inner()),
        ))
    }

    async fn unwrap_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
        edek: &Edek,
    ) -> Result<KeyMaterial, ProviderError> {
        let out = self
            .client
            .decrypt()
            .key_id(tek)
            .ciphertext_blob(Blob::new(edek.0.clone()))
            .encryption_context("topic", context.topic)
            .encryption_context("partition", context.partition.to_string())
            .encryption_context("version", context.version.to_string())
            .send()
            .await
            .map_err(|e| classify(e, tek, Some(context)))?;
        out.plaintext
            .map(|p| KeyMaterial::from_vec(p.into_inner()))
            .ok_or_else(|| invalid(tek, context))
    }
}

impl TekManager for AwsKms {
    /// `tek` must be an alias (`alias/...`) to be created; an existing alias or key is accepted
    /// if enabled. Created keys get yearly automatic rotation.
    async fn create_tek(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        self.create(tek, None).await
    }

    async fn create_tek_for(
        &self,
        tek: &str,
        owner: &TekOwner<'_>,
    ) -> Result<TekInfo, ProviderError> {
        self.create(tek, Some(owner)).await
    }

    async fn describe_tek(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        self.info(tek).await
    }

    async fn rotate_tek(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        // RotateKeyOnDemand takes a key id or ARN, not an alias.
        let key_id = self.key_id(tek).await?;
        self.client
            .rotate_key_on_demand()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| classify(e, tek, None))?;
        self.info(tek).await
    }

    async fn delete_tek(&self, tek: &str) -> Result<(), ProviderError> {
        self.delete(tek, None).await
    }

    async fn delete_tek_of(&self, tek: &str, owner: &TekOwner<'_>) -> Result<(), ProviderError> {
        self.delete(tek, Some(owner)).await
    }

    async fn rewrap_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
        edek: &Edek,
    ) -> Result<Edek, ProviderError> {
        let partition = context.partition.to_string();
        let version = context.version.to_string();
        let out = self
            .client
            .re_encrypt()
            .ciphertext_blob(Blob::new(edek.0.clone()))
            .source_key_id(tek)
            .source_encryption_context("topic", context.topic)
            .source_encryption_context("partition", &partition)
            .source_encryption_context("version", &version)
            .destination_key_id(tek)
            .destination_encryption_context("topic", context.topic)
            .destination_encryption_context("partition", &partition)
            .destination_encryption_context("version", &version)
            .send()
            .await
            .map_err(|e| classify(e, tek, Some(context)))?;
        out.ciphertext_blob
            .map(|b| Edek(b.into_inner()))
            .ok_or_else(|| invalid(tek, context))
    }

    /// AWS ciphertexts do not reveal the backing-key version.
    fn edek_tek_version(&self, _edek: &Edek) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_kms::error::ErrorMetadata;
    use aws_sdk_kms::operation::decrypt::DecryptError;

    use super::*;

    #[test]
    fn debug_output_never_contains_the_secret_key() {
        let creds = AwsStaticCredentials {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: Zeroizing::new("wJalr-super-secret".into()),
            session_token: Some(Zeroizing::new("session-secret".into())),
        };
        let shown = format!("{creds:?}");
        assert!(shown.contains("AKIAEXAMPLE"), "{shown}");
        assert!(
            !shown.contains("super-secret") && !shown.contains("session-secret"),
            "{shown}"
        );
    }

    fn service_error(code: &str) -> ProviderError {
        let error = DecryptError::generic(ErrorMetadata::builder().code(code).message("m").build());
        classify(
            SdkError::<DecryptError, ()>::service_error(error, ()),
            "alias/t",
            None,
        )
    }

    /// moto lets disabled keys decrypt and answers bad ciphertext with AccessDenied; AWS
    /// answers DisabledException and InvalidCiphertextException. The mapping of AWS's documented
    /// codes is checked here, since the test bed cannot produce them.
    #[test]
    fn aws_error_codes_map_to_classes() {
        let cases = [
            ("DisabledException", "disabled"),
            ("KMSInvalidStateException", "disabled"),
            ("NotFoundException", "not_found"),
            ("AccessDeniedException", "access_denied"),
            ("ThrottlingException", "throttled"),
            ("LimitExceededException", "throttled"),
            ("InvalidCiphertextException", "invalid_ciphertext"),
            ("IncorrectKeyException", "invalid_ciphertext"),
            ("KMSInternalException", "unavailable"),
            ("DependencyTimeoutException", "unavailable"),
            ("ValidationException", "misconfigured"),
        ];
        for (code, class) in cases {
            assert_eq!(service_error(code).class(), class, "{code}");
        }
    }
}
