//! The mutating half, as a pure function: a pod (the parts of it injection reads) and its
//! namespace's client index in, a JSON patch or a typed problem out (docs/webhook.md).
//!
//! What a pod gets is one projected volume holding the client configuration of its topics'
//! KMS connection plus what that configuration names (a service-account token with the
//! KMS's audience, keys of a Secret), mounted read-only in the chosen containers, and
//! `KAFKA_E2EE_CONFIG` pointing at the file. References only: the kubelet fills the volume.
//!
//! With `kafka-e2ee.io/mode: proxy` the volume goes to an injected sidecar, the encrypting
//! proxy (a native sidecar where the apiserver has them), and the chosen containers get only
//! the proxy's loopback address in their bootstrap variable: any Kafka client then encrypts.
//!
//! Idempotent by construction: what is already present exactly as we would add it is not
//! added again, so a reinvocation (`reinvocationPolicy: IfNeeded`) or a re-submitted
//! injected spec yields no patch; anything present but different is a conflict, never
//! overwritten.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, LazyLock};

use kafka_e2ee_crds::injection::{
    self, AWS_ROLE_ARN_ANNOTATION, BOOTSTRAP_ENV_ANNOTATION, CLIENT_CONFIGMAP, CONFIG_ENV,
    CONTAINERS_ANNOTATION, ClientIndex, DEFAULT_BOOTSTRAP_ENV, INJECT_ANNOTATION,
    INJECTED_ANNOTATION, InjectionRecord, KAFKA_CREDENTIALS_ENV, KAFKA_SECRET_ANNOTATION,
    KAFKA_SECRET_PATH, KAFKA_SECRET_VOLUME, MODE_ANNOTATION, MODE_PROXY, MOUNT_PATH,
    PROXY_BOOTSTRAP, PROXY_CONTAINER, PROXY_HEALTH_PORT, PROXY_KAFKA_SECRET_ANNOTATION, Profile,
    ProjectedSource, TOPICS_ANNOTATION, VOLUME_NAME,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// A namespace's client index, with what injection derives from it built once per version of
/// the index instead of once per admitted pod: each profile's projected volume.
#[derive(Debug, Default)]
pub struct PreparedIndex {
    pub index: ClientIndex,
    /// Per profile: the volume of a pod that adds nothing of its own to it (no AWS role).
    volumes: BTreeMap<String, Item>,
}

impl PreparedIndex {
    pub fn new(index: ClientIndex) -> Self {
        let volumes = index
            .profiles
            .iter()
            .map(|(name, profile)| (name.clone(), Item::new(volume(name, profile, None))))
            .collect();
        Self { index, volumes }
    }
}

impl From<ClientIndex> for PreparedIndex {
    fn from(index: ClientIndex) -> Self {
        Self::new(index)
    }
}

/// Something a patch adds, kept both ways: parsed, to compare with what the pod has, and
/// serialized, to be written into the patch as it is.
#[derive(Debug, Clone)]
struct Item {
    value: Value,
    json: Option<Box<RawValue>>,
}

impl Item {
    fn new(value: Value) -> Self {
        // Serializing a Value cannot fail; were it to, the value is serialized per patch.
        let json = RawValue::from_string(value.to_string()).ok();
        Self { value, json }
    }
}

impl Serialize for Item {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.json {
            Some(json) => json.serialize(serializer),
            None => self.value.serialize(serializer),
        }
    }
}

/// What every injected container gets in client mode: the variable naming the file, and the
/// volume's mount.
static CONFIG_ENV_ITEM: LazyLock<Item> =
    LazyLock::new(|| Item::new(json!({"name": CONFIG_ENV, "value": config_path()})));
static MOUNT_ITEM: LazyLock<Item> = LazyLock::new(|| {
    Item::new(json!({"name": VOLUME_NAME, "mountPath": MOUNT_PATH, "readOnly": true}))
});

/// The parts of a pod injection reads. Everything else (managed fields, the rest of each
/// container) is skipped while parsing, never materialised: a pod review costs one pass.
#[derive(Debug, Default, Deserialize)]
pub struct PodView {
    #[serde(default)]
    metadata: PodMeta,
    #[serde(default)]
    spec: PodSpecView,
}

#[derive(Debug, Default, Deserialize)]
struct PodMeta {
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpecView {
    #[serde(default)]
    service_account_name: Option<String>,
    #[serde(default)]
    service_account: Option<String>,
    #[serde(default)]
    volumes: Option<Vec<Value>>,
    #[serde(default)]
    containers: Option<Vec<ContainerView>>,
    #[serde(default)]
    init_containers: Option<Vec<ContainerView>>,
    #[serde(default)]
    security_context: Option<SecurityContextView>,
}

/// The parts of a (pod or container) security context that decide who can read the
/// injected files.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecurityContextView {
    #[serde(default)]
    fs_group: Option<i64>,
    #[serde(default)]
    run_as_user: Option<i64>,
    #[serde(default)]
    run_as_non_root: Option<bool>,
}

impl SecurityContextView {
    fn non_root(&self) -> bool {
        self.run_as_user.is_some_and(|u| u != 0) || self.run_as_non_root == Some(true)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerView {
    name: String,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    args: Option<Vec<String>>,
    #[serde(default)]
    restart_policy: Option<String>,
    #[serde(default)]
    env: Option<Vec<Value>>,
    #[serde(default)]
    volume_mounts: Option<Vec<Value>>,
    #[serde(default)]
    security_context: Option<SecurityContextView>,
}

impl ContainerView {
    /// Whether this is the proxy sidecar as we would inject it (image, arguments, and where
    /// it runs), e.g. on reinvocation.
    fn is_proxy(&self, ours: &Value, native: bool, pointer: &str) -> bool {
        let args: Option<Vec<String>> = serde_json::from_value(ours["args"].clone()).ok();
        let placed = if native {
            pointer.starts_with("/spec/initContainers/")
                && self.restart_policy.as_deref() == Some("Always")
        } else {
            pointer.starts_with("/spec/containers/")
        };
        placed && self.image.as_deref() == ours["image"].as_str() && self.args == args
    }
}

impl PodView {
    /// Parses a pod's JSON.
    pub fn parse(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }

    /// Regular containers, then init containers, with their JSON pointers.
    fn all_containers(&self) -> impl Iterator<Item = (String, &ContainerView)> {
        fn list<'a>(
            field: &'static str,
            items: &'a Option<Vec<ContainerView>>,
        ) -> impl Iterator<Item = (String, &'a ContainerView)> {
            items
                .iter()
                .flatten()
                .enumerate()
                .map(move |(i, c)| (format!("/spec/{field}/{i}"), c))
        }
        list("containers", &self.spec.containers)
            .chain(list("initContainers", &self.spec.init_containers))
    }
}

/// Why a pod that asked for injection cannot get it. Bounded: these are metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemReason {
    /// A named topic has no EncryptedTopic in the pod's namespace.
    UnknownTopic,
    /// The topics use different KMS connections; a client has one KeyProvider.
    MixedConnections,
    /// The connection cannot be used by pods (e.g. Vault token auth).
    ConnectionUnavailable,
    /// The connection needs a Secret from another namespace.
    NoAccess,
    /// The pod already configures encryption (or our volume/mount) differently.
    ConflictingConfig,
    /// The containers annotation names a container the pod does not have.
    UnknownContainer,
    /// A token must be projected, but the pod names no service account.
    NoServiceAccount,
    /// The pod is not valid JSON of a pod.
    MalformedPod,
    /// The patch could not be encoded (a bug, never the pod's fault).
    Internal,
    /// Proxy mode was asked for, and this webhook has no proxy image configured.
    ProxyUnavailable,
}

impl ProblemReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownTopic => "UnknownTopic",
            Self::MixedConnections => "MixedConnections",
            Self::ConnectionUnavailable => "ConnectionUnavailable",
            Self::NoAccess => "NoAccess",
            Self::ConflictingConfig => "ConflictingConfig",
            Self::UnknownContainer => "UnknownContainer",
            Self::NoServiceAccount => "NoServiceAccount",
            Self::MalformedPod => "MalformedPod",
            Self::ProxyUnavailable => "ProxyUnavailable",
            Self::Internal => "Internal",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub reason: ProblemReason,
    pub message: String,
}

impl Problem {
    fn new(reason: ProblemReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// Why a pod was left alone. Bounded (metric labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// It names no topics.
    NotRequested,
    /// `kafka-e2ee.io/inject: "false"`.
    OptedOut,
    /// kube-system, the webhook's own namespace, or one configured as excluded.
    ExcludedNamespace,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Skip(Skip),
    /// Everything is already in place (a reinvocation).
    AlreadyInjected,
    /// JSON patch operations (RFC 6902, as JSON: an array) and what they inject, with
    /// warnings for the user.
    Inject {
        patch: Vec<u8>,
        record: InjectionRecord,
        warnings: Vec<String>,
    },
    Problem(Problem),
}

/// The encrypting proxy as the webhook injects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySidecar {
    pub image: String,
    /// A native sidecar (an init container with `restartPolicy: Always`, Kubernetes 1.29+):
    /// it starts before and stops after the application's containers. Otherwise a regular
    /// container.
    pub native: bool,
}

/// What the webhook is configured to do, besides the index.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Never injected into (kube-system, the webhook's own namespace, configured ones).
    pub excluded: BTreeSet<String>,
    /// `None`: proxy mode is refused (no image configured).
    pub proxy: Option<ProxySidecar>,
}

/// Decides what to do with `pod` (the AdmissionRequest's object) created in `namespace`.
/// `index` looks up the namespace's client index (if the operator published one); it is
/// called only for pods that ask for injection.
pub fn decide(
    pod: &PodView,
    namespace: &str,
    policy: &Policy,
    index: impl FnOnce() -> Option<Arc<PreparedIndex>>,
) -> Decision {
    if policy.excluded.contains(namespace) {
        return Decision::Skip(Skip::ExcludedNamespace);
    }
    if pod
        .annotation(INJECT_ANNOTATION)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
    {
        return Decision::Skip(Skip::OptedOut);
    }
    let topics = injection::split_list(pod.annotation(TOPICS_ANNOTATION).unwrap_or_default());
    if topics.is_empty() {
        return Decision::Skip(Skip::NotRequested);
    }
    let proxy = match pod.annotation(MODE_ANNOTATION).map(str::trim) {
        None | Some("" | "client") => None,
        Some(MODE_PROXY) => match &policy.proxy {
            Some(proxy) => Some(proxy),
            None => {
                return Decision::Problem(Problem::new(
                    ProblemReason::ProxyUnavailable,
                    format!(
                        "{MODE_ANNOTATION}: {MODE_PROXY} asks for the encrypting proxy, and this webhook has no proxy image configured (chart value proxy.image, flag --proxy-image)"
                    ),
                ));
            }
        },
        Some(other) => {
            return Decision::Problem(Problem::new(
                ProblemReason::MalformedPod,
                format!(
                    "{MODE_ANNOTATION} is '{other}'; it is 'client' (the default) or '{MODE_PROXY}'"
                ),
            ));
        }
    };
    let index = index();
    match plan(pod, namespace, &topics, index.as_deref(), proxy) {
        Ok(plan) => plan.into_decision(pod),
        Err(problem) => Decision::Problem(problem),
    }
}

/// What the pod should end up with; the common items are borrowed from the prepared index.
struct Plan<'a> {
    /// Ours first ([`VOLUME_NAME`]), then the Kafka Secret if the pod names one.
    volumes: Vec<Cow<'a, Item>>,
    /// Added to each chosen container.
    env: Vec<Cow<'a, Item>>,
    /// Mounted in each chosen container (client mode): ours, then the Kafka Secret's.
    mounts: Vec<Cow<'a, Item>>,
    /// The chosen containers, with their JSON pointers.
    containers: Vec<(String, &'a ContainerView)>,
    /// Proxy mode: the sidecar, and whether it is a native one.
    sidecar: Option<(Item, bool)>,
    record: InjectionRecord,
}

/// The projected volume of a profile: the client configuration and what it names, plus
/// `extra` (the AWS web-identity token of a pod that names a role).
fn volume(profile_name: &str, profile: &Profile, extra: Option<Value>) -> Value {
    let mut config_items = vec![json!({"key": profile_name, "path": injection::CONFIG_FILE})];
    let mut sources = Vec::new();
    for source in &profile.sources {
        sources.push(match source {
            ProjectedSource::ClientConfigMap { key, path } => {
                config_items.push(json!({"key": key, "path": path}));
                continue;
            }
            ProjectedSource::ServiceAccountToken { audience, path } => {
                token_source(audience.as_deref(), path.as_str())
            }
            ProjectedSource::Secret { name, items, .. } => {
                let items: Vec<Value> = items
                    .iter()
                    .map(|(key, path)| json!({"key": key, "path": path}))
                    .collect();
                json!({"secret": {"name": name, "items": items}})
            }
        });
    }
    sources.insert(
        0,
        json!({"configMap": {"name": CLIENT_CONFIGMAP, "items": config_items}}),
    );
    sources.extend(extra);
    // Owner and group only: the configuration names the KMS and the token is a credential
    // (the pod's fsGroup, if set, is the group).
    json!({"name": VOLUME_NAME, "projected": {"defaultMode": INJECTED_FILE_MODE, "sources": sources}})
}

fn plan<'a>(
    pod: &'a PodView,
    namespace: &str,
    topics: &[String],
    prepared: Option<&'a PreparedIndex>,
    proxy: Option<&ProxySidecar>,
) -> Result<Plan<'a>, Problem> {
    static EMPTY: LazyLock<PreparedIndex> = LazyLock::new(PreparedIndex::default);
    let prepared = prepared.unwrap_or(&EMPTY);
    let index = &prepared.index;
    let unknown: Vec<&str> = topics
        .iter()
        .filter(|t| !index.topics.contains_key(*t))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = index.topics.keys().take(10).map(String::as_str).collect();
        let known = if known.is_empty() {
            format!("namespace {namespace} has no EncryptedTopics")
        } else {
            let more = index.topics.len().saturating_sub(known.len());
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            format!("known in {namespace}: {}{more}", known.join(", "))
        };
        return Err(Problem::new(
            ProblemReason::UnknownTopic,
            format!(
                "{TOPICS_ANNOTATION} names {} that no EncryptedTopic in namespace {namespace} manages ({known}); \
                 fix the annotation or create the EncryptedTopic first",
                quote_list(&unknown)
            ),
        ));
    }
    let mut profiles: Vec<(&str, &str)> = topics
        .iter()
        .filter_map(|t| {
            index
                .topics
                .get(t)
                .map(|e| (e.profile.as_str(), t.as_str()))
        })
        .collect();
    profiles.sort_unstable();
    profiles.dedup_by_key(|(profile, _)| *profile);
    let profile_name = match profiles.as_slice() {
        [(one, _)] => *one,
        many => {
            let described: Vec<String> = many
                .iter()
                .map(|(p, t)| {
                    let kms = index.profiles.get(*p).map_or(*p, |p| p.kms_ref.as_str());
                    format!("'{t}' uses {kms}")
                })
                .collect();
            return Err(Problem::new(
                ProblemReason::MixedConnections,
                format!(
                    "the topics use different KMS connections ({}), and a client has one KeyProvider; \
                     split the workload into pods per connection",
                    described.join(", ")
                ),
            ));
        }
    };
    let Some(profile) = index.profiles.get(profile_name) else {
        return Err(Problem::new(
            ProblemReason::ConnectionUnavailable,
            format!("the client index of namespace {namespace} has no profile {profile_name}"),
        ));
    };
    if let Some(reason) = &profile.unavailable {
        return Err(Problem::new(
            ProblemReason::ConnectionUnavailable,
            reason.clone(),
        ));
    }
    for source in &profile.sources {
        if let ProjectedSource::Secret {
            namespace: secret_namespace,
            name,
            ..
        } = source
            && secret_namespace != namespace
        {
            return Err(Problem::new(
                ProblemReason::NoAccess,
                format!(
                    "{} keeps its Secret {name} in namespace {secret_namespace}, and pods \
                     in {namespace} can mount only Secrets of their own namespace; use a \
                     KmsConnection in {namespace} (with its own Secret) for these topics",
                    profile.kms_ref
                ),
            ));
        }
    }
    let mut env = vec![Cow::Borrowed(&*CONFIG_ENV_ITEM)];
    let aws_role = pod
        .annotation(AWS_ROLE_ARN_ANNOTATION)
        .map(str::trim)
        .filter(|role| profile.provider == "awsKms" && !role.is_empty());
    let volume = match aws_role {
        Some(role) => {
            env.push(Cow::Owned(Item::new(
                json!({"name": "AWS_ROLE_ARN", "value": role}),
            )));
            env.push(Cow::Owned(Item::new(json!({
                "name": "AWS_WEB_IDENTITY_TOKEN_FILE",
                "value": format!("{MOUNT_PATH}/{}", injection::AWS_TOKEN_FILE),
            }))));
            let token = token_source(Some(injection::AWS_AUDIENCE), injection::AWS_TOKEN_FILE);
            Cow::Owned(Item::new(volume(profile_name, profile, Some(token))))
        }
        None => match prepared.volumes.get(profile_name) {
            Some(built) => Cow::Borrowed(built),
            None => Cow::Owned(Item::new(volume(profile_name, profile, None))),
        },
    };
    let needs_token = aws_role.is_some()
        || profile
            .sources
            .iter()
            .any(|s| matches!(s, ProjectedSource::ServiceAccountToken { .. }));
    let account = [&pod.spec.service_account_name, &pod.spec.service_account]
        .into_iter()
        .flatten()
        .find(|a| !a.is_empty());
    if needs_token && account.is_none() {
        return Err(Problem::new(
            ProblemReason::NoServiceAccount,
            format!(
                "{} needs a service-account token projected into the pod, and the pod names no \
                 serviceAccountName (the ServiceAccount admission plugin normally sets one); set it",
                profile.kms_ref
            ),
        ));
    }
    let mut containers = choose_containers(pod, pod.annotation(CONTAINERS_ANNOTATION))?;
    if proxy.is_some() {
        if pod.annotation(CONTAINERS_ANNOTATION).is_some_and(|a| {
            injection::split_list(a)
                .iter()
                .any(|c| c == PROXY_CONTAINER)
        }) {
            return Err(Problem::new(
                ProblemReason::UnknownContainer,
                format!("{CONTAINERS_ANNOTATION} names {PROXY_CONTAINER}, the proxy itself"),
            ));
        }
        // Once injected as a regular container, the proxy is one of "all containers".
        containers.retain(|(_, c)| c.name != PROXY_CONTAINER);
    }
    let record = InjectionRecord {
        topics: topics.to_vec(),
        profile: profile_name.to_owned(),
        containers: containers.iter().map(|(_, c)| c.name.clone()).collect(),
        mode: proxy.map(|_| MODE_PROXY.to_owned()),
    };
    let mount = Cow::Borrowed(&*MOUNT_ITEM);
    Ok(match proxy {
        None => {
            if pod.annotation(PROXY_KAFKA_SECRET_ANNOTATION).is_some() {
                return Err(Problem::new(
                    ProblemReason::MalformedPod,
                    format!(
                        "{PROXY_KAFKA_SECRET_ANNOTATION} gives the proxy its Kafka credentials; it needs {MODE_ANNOTATION}: {MODE_PROXY} (the application's own credentials: {KAFKA_SECRET_ANNOTATION})"
                    ),
                ));
            }
            let mut volumes = vec![volume];
            let mut mounts = vec![mount];
            let mut env = env;
            if let Some(secret) = kafka_secret(pod, KAFKA_SECRET_ANNOTATION)? {
                volumes.push(Cow::Owned(Item::new(kafka_secret_volume(secret))));
                mounts.push(Cow::Owned(Item::new(kafka_secret_mount())));
                env.push(Cow::Owned(Item::new(
                    json!({"name": KAFKA_CREDENTIALS_ENV, "value": KAFKA_SECRET_PATH}),
                )));
            }
            Plan {
                volumes,
                env,
                mounts,
                containers,
                sidecar: None,
                record,
            }
        }
        Some(proxy) => {
            let bootstrap_env = pod
                .annotation(BOOTSTRAP_ENV_ANNOTATION)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .unwrap_or(DEFAULT_BOOTSTRAP_ENV);
            if pod.annotation(KAFKA_SECRET_ANNOTATION).is_some() {
                return Err(Problem::new(
                    ProblemReason::MalformedPod,
                    format!(
                        "{KAFKA_SECRET_ANNOTATION} gives the application its Kafka credentials; in {MODE_ANNOTATION}: {MODE_PROXY} the proxy connects to Kafka: name the Secret in {PROXY_KAFKA_SECRET_ANNOTATION}"
                    ),
                ));
            }
            let mut volumes = vec![volume];
            let mut mounts = vec![mount.value.clone()];
            let mut env: Vec<Value> = env.iter().map(|item| item.value.clone()).collect();
            if let Some(secret) = kafka_secret(pod, PROXY_KAFKA_SECRET_ANNOTATION)? {
                volumes.push(Cow::Owned(Item::new(kafka_secret_volume(secret))));
                mounts.push(kafka_secret_mount());
                env.push(json!({"name": "KAFKA_E2EE_PROXY_UPSTREAM_CREDENTIALS", "value": KAFKA_SECRET_PATH}));
            }
            let sidecar = Item::new(proxy_container(proxy, env, mounts));
            Plan {
                volumes,
                env: vec![Cow::Owned(Item::new(
                    json!({"name": bootstrap_env, "value": PROXY_BOOTSTRAP}),
                ))],
                mounts: Vec::new(),
                containers,
                sidecar: Some((sidecar, proxy.native)),
                record,
            }
        }
    })
}

/// The Secret `annotation` names, if the pod has it: a Secret of the pod's namespace (the
/// kubelet resolves it there; the webhook never reads it).
fn kafka_secret<'p>(pod: &'p PodView, annotation: &str) -> Result<Option<&'p str>, Problem> {
    let Some(secret) = pod.annotation(annotation).map(str::trim) else {
        return Ok(None);
    };
    if !is_dns_subdomain(secret) {
        return Err(Problem::new(
            ProblemReason::MalformedPod,
            format!("{annotation} is '{secret}', which is not a Secret name"),
        ));
    }
    Ok(Some(secret))
}

fn kafka_secret_volume(secret: &str) -> Value {
    json!({"name": KAFKA_SECRET_VOLUME, "secret": {"secretName": secret, "defaultMode": INJECTED_FILE_MODE}})
}

fn kafka_secret_mount() -> Value {
    json!({"name": KAFKA_SECRET_VOLUME, "mountPath": KAFKA_SECRET_PATH, "readOnly": true})
}

/// The proxy sidecar: the volume, the KMS environment, a restricted security context (it may
/// read the 0440 files: group 0 owns them unless the pod sets an fsGroup, which every
/// container then has), a readiness probe on its health port.
fn proxy_container(proxy: &ProxySidecar, env: Vec<Value>, mounts: Vec<Value>) -> Value {
    let mut container = json!({
        "name": PROXY_CONTAINER,
        "image": proxy.image,
        "args": ["--listen", PROXY_BOOTSTRAP, "--http-addr", format!("0.0.0.0:{PROXY_HEALTH_PORT}")],
        "env": env,
        "ports": [{"name": "e2ee-proxy", "containerPort": PROXY_HEALTH_PORT}],
        "volumeMounts": mounts,
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": PROXY_HEALTH_PORT}, "periodSeconds": 5},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 0,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    });
    if proxy.native {
        container["restartPolicy"] = json!("Always");
    }
    container
}

/// A Kubernetes object name (RFC 1123 subdomain), as Secrets are named.
fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

fn token_source(audience: Option<&str>, path: &str) -> Value {
    let mut token = json!({
        "path": path,
        "expirationSeconds": injection::TOKEN_EXPIRATION_SECONDS,
    });
    if let (Some(audience), Some(map)) = (audience, token.as_object_mut()) {
        map.insert("audience".into(), audience.into());
    }
    json!({ "serviceAccountToken": token })
}

fn config_path() -> String {
    format!("{MOUNT_PATH}/{}", injection::CONFIG_FILE)
}

fn quote_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|t| format!("'{t}'")).collect();
    match quoted.as_slice() {
        [one] => format!("topic {one}"),
        _ => format!("topics {}", quoted.join(", ")),
    }
}

/// The containers to inject into, with their JSON pointers: all regular containers, or those
/// the annotation names (init containers included, if named).
fn choose_containers<'a>(
    pod: &'a PodView,
    wanted: Option<&str>,
) -> Result<Vec<(String, &'a ContainerView)>, Problem> {
    let all: Vec<(String, &ContainerView)> = pod.all_containers().collect();
    let Some(wanted) = wanted.map(injection::split_list).filter(|w| !w.is_empty()) else {
        let regular: Vec<(String, &ContainerView)> = all
            .into_iter()
            .filter(|(pointer, _)| pointer.starts_with("/spec/containers/"))
            .collect();
        if regular.is_empty() {
            return Err(Problem::new(
                ProblemReason::MalformedPod,
                "the pod has no containers",
            ));
        }
        return Ok(regular);
    };
    let mut chosen = Vec::new();
    let mut missing = Vec::new();
    for name in &wanted {
        match all.iter().find(|(_, c)| c.name == *name) {
            Some(found) => chosen.push(found.clone()),
            None => missing.push(name.as_str()),
        }
    }
    if !missing.is_empty() {
        let have: Vec<&str> = all.iter().map(|(_, c)| c.name.as_str()).collect();
        return Err(Problem::new(
            ProblemReason::UnknownContainer,
            format!(
                "{CONTAINERS_ANNOTATION} names {} that the pod does not have (it has: {})",
                missing
                    .iter()
                    .map(|m| format!("'{m}'"))
                    .collect::<Vec<_>>()
                    .join(", "),
                have.join(", ")
            ),
        ));
    }
    Ok(chosen)
}

impl Plan<'_> {
    fn into_decision(self, pod: &PodView) -> Decision {
        let patch = self.patch(pod).and_then(|ops| {
            if ops.is_empty() {
                return Ok(None);
            }
            serde_json::to_vec(&ops).map(Some).map_err(|e| {
                Problem::new(
                    ProblemReason::Internal,
                    format!("cannot encode the patch: {e}"),
                )
            })
        });
        match patch {
            Ok(None) => Decision::AlreadyInjected,
            Ok(Some(patch)) => Decision::Inject {
                patch,
                // In proxy mode only the proxy reads the files, with group 0.
                warnings: if !self.mounts.is_empty() {
                    unreadable_warning(pod, &self.containers)
                        .into_iter()
                        .collect()
                } else {
                    Vec::new()
                },
                record: self.record,
            },
            Err(problem) => Decision::Problem(problem),
        }
    }

    /// The operations, borrowing what they add from the plan (serialized once, never copied).
    fn patch<'p>(&'p self, pod: &PodView) -> Result<Vec<Op<'p>>, Problem> {
        let conflict = |what: String| {
            Err(Problem::new(
                ProblemReason::ConflictingConfig,
                format!(
                    "{what}; a client takes its encryption settings from exactly one place \
                     (KIP-317): remove them, or opt the pod out with {INJECT_ANNOTATION}: \"false\""
                ),
            ))
        };
        let mut ops = Vec::new();
        let volumes = pod.spec.volumes.as_deref();
        for volume in &self.volumes {
            let name = volume.value["name"].as_str().unwrap_or_default();
            match find_named(volumes, name) {
                Some(existing) if covers(existing, &volume.value) => {}
                Some(_) => {
                    return conflict(format!(
                        "the pod already has a different volume named {name}"
                    ));
                }
                None => append(volumes, "/spec/volumes".into(), volume, &mut ops),
            }
        }
        for (pointer, container) in &self.containers {
            let name = &container.name;
            let env = container.env.as_deref();
            for var in &self.env {
                let var_name = var.value["name"].as_str().unwrap_or_default();
                match find_named(env, var_name) {
                    Some(existing) if covers(existing, &var.value) => {}
                    Some(_) => {
                        return conflict(format!("container {name} sets {var_name} itself"));
                    }
                    None => append(env, format!("{pointer}/env"), var, &mut ops),
                }
            }
            let mounts = container.volume_mounts.as_deref();
            for mount in &self.mounts {
                let path = &mount.value["mountPath"];
                let at_our_path = mounts
                    .into_iter()
                    .flatten()
                    .find(|m| &m["mountPath"] == path);
                match at_our_path {
                    Some(existing) if covers(existing, &mount.value) => {}
                    Some(_) => {
                        return conflict(format!(
                            "container {name} already mounts something else at {}",
                            path.as_str().unwrap_or_default()
                        ));
                    }
                    None => append(mounts, format!("{pointer}/volumeMounts"), mount, &mut ops),
                }
            }
        }
        if let Some((sidecar, native)) = &self.sidecar {
            let existing = pod
                .all_containers()
                .find(|(_, c)| c.name == PROXY_CONTAINER);
            match existing {
                Some((pointer, c)) if c.is_proxy(&sidecar.value, *native, &pointer) => {}
                Some(_) => {
                    return conflict(format!(
                        "the pod already has a different container named {PROXY_CONTAINER}"
                    ));
                }
                // Last, so that the pointers of the operations above still name the
                // containers they were computed for.
                None if *native => match &pod.spec.init_containers {
                    // First: it starts before any init container that may need Kafka.
                    Some(_) => ops.push(Op::add("/spec/initContainers/0", OpValue::One(sidecar))),
                    None => ops.push(Op::add(
                        "/spec/initContainers",
                        OpValue::Many(vec![sidecar]),
                    )),
                },
                // A pod always has containers (choose_containers refused one without).
                None => ops.push(Op::add("/spec/containers/-", OpValue::One(sidecar))),
            }
        }
        let record = serde_json::to_string(&self.record).unwrap_or_default();
        // The topics annotation exists (it asked for injection), so annotations do too.
        if pod.annotation(INJECTED_ANNOTATION) != Some(record.as_str()) && !ops.is_empty() {
            ops.push(Op::add(
                format!("/metadata/annotations/{}", escape(INJECTED_ANNOTATION)),
                OpValue::Text(record),
            ));
        }
        Ok(ops)
    }
}

/// The injected files' mode: 0440.
pub const INJECTED_FILE_MODE: u32 = 0o440;

/// A warning when a chosen container runs as a non-root user and the pod sets no fsGroup:
/// the injected files (mode 0440, owned by root) would not be readable to it.
fn unreadable_warning(pod: &PodView, containers: &[(String, &ContainerView)]) -> Option<String> {
    let pod_context = pod.spec.security_context.as_ref();
    if pod_context.is_some_and(|c| c.fs_group.is_some()) {
        return None;
    }
    let pod_non_root = pod_context.is_some_and(SecurityContextView::non_root);
    let non_root: Vec<&str> = containers
        .iter()
        .filter(|(_, c)| {
            c.security_context.as_ref().map_or(pod_non_root, |own| {
                own.non_root() || (own.run_as_user.is_none() && pod_non_root)
            })
        })
        .map(|(_, c)| c.name.as_str())
        .collect();
    (!non_root.is_empty()).then(|| {
        format!(
            "kafka-e2ee: the injected files are mode 0440 and the pod sets no securityContext.fsGroup, so container(s) {} running as a non-root user may not read them; set spec.securityContext.fsGroup",
            non_root.join(", ")
        )
    })
}

/// Whether `existing` holds everything `ours` sets, with the same values. Extra fields are
/// fine: between webhook calls the apiserver fills in defaults (a projected volume's
/// `defaultMode`, for one), and a reinvocation must still recognise our own injection.
fn covers(existing: &Value, ours: &Value) -> bool {
    match (existing, ours) {
        (Value::Object(have), Value::Object(want)) => want
            .iter()
            .all(|(key, value)| have.get(key).is_some_and(|h| covers(h, value))),
        (Value::Array(have), Value::Array(want)) => {
            have.len() == want.len() && have.iter().zip(want).all(|(h, w)| covers(h, w))
        }
        _ => existing == ours,
    }
}

/// The element named `name` of `items`, if any.
fn find_named<'a>(items: Option<&'a [Value]>, name: &str) -> Option<&'a Value> {
    items?
        .iter()
        .find(|item| item.get("name").and_then(Value::as_str) == Some(name))
}

/// One RFC 6902 `add` operation.
#[derive(Debug, Serialize)]
struct Op<'p> {
    op: &'static str,
    path: String,
    value: OpValue<'p>,
}

impl<'p> Op<'p> {
    fn add(path: impl Into<String>, value: OpValue<'p>) -> Self {
        Self {
            op: "add",
            path: path.into(),
            value,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum OpValue<'p> {
    One(&'p Item),
    /// A new array.
    Many(Vec<&'p Item>),
    Text(String),
}

/// Appends `item` to the array at `pointer` (whose current content is `existing`), creating
/// it if the pod, and the operations so far, have none.
fn append<'p>(existing: Option<&[Value]>, pointer: String, item: &'p Item, ops: &mut Vec<Op<'p>>) {
    // An earlier operation of ours may have created the array already.
    if let Some(op) = ops.iter_mut().find(|op| op.path == pointer) {
        if let OpValue::Many(items) = &mut op.value {
            items.push(item);
        }
        return;
    }
    if existing.is_some() {
        ops.push(Op::add(format!("{pointer}/-"), OpValue::One(item)));
    } else {
        ops.push(Op::add(pointer, OpValue::Many(vec![item])));
    }
}

/// JSON pointer escaping (RFC 6901) of one reference token.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kafka_e2ee_crds::injection::{INDEX_FORMAT, IndexedTopic};

    use super::*;

    fn index() -> ClientIndex {
        let topic = |profile: &str| IndexedTopic {
            encrypted_topic: "x".into(),
            profile: profile.into(),
        };
        let profile = |kms_ref: &str, provider: &str, sources| Profile {
            kms_ref: kms_ref.into(),
            provider: provider.into(),
            sources,
            unavailable: None,
        };
        ClientIndex {
            format: INDEX_FORMAT,
            topics: BTreeMap::from([
                ("orders".into(), topic("kmsconnection.vault.yaml")),
                ("payments".into(), topic("kmsconnection.vault.yaml")),
                ("audit".into(), topic("clusterkmsconnection.shared.yaml")),
                ("billing".into(), topic("kmsconnection.aws.yaml")),
                ("legacy".into(), topic("kmsconnection.token.yaml")),
            ]),
            profiles: BTreeMap::from([
                (
                    "kmsconnection.vault.yaml".into(),
                    profile(
                        "KmsConnection/vault",
                        "vault",
                        vec![ProjectedSource::ServiceAccountToken {
                            audience: Some("vault".into()),
                            path: "vault-token".into(),
                        }],
                    ),
                ),
                (
                    "clusterkmsconnection.shared.yaml".into(),
                    profile(
                        "ClusterKmsConnection/shared",
                        "keystore",
                        vec![ProjectedSource::Secret {
                            namespace: "kafka-e2ee".into(),
                            name: "keys".into(),
                            items: BTreeMap::from([("k".into(), "keystore.json".into())]),
                        }],
                    ),
                ),
                (
                    "kmsconnection.aws.yaml".into(),
                    profile("KmsConnection/aws", "awsKms", vec![]),
                ),
                (
                    "kmsconnection.token.yaml".into(),
                    Profile {
                        unavailable: Some("KmsConnection/token uses Vault token auth".into()),
                        ..profile("KmsConnection/token", "vault", vec![])
                    },
                ),
            ]),
        }
    }

    fn pod(annotations: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "app", "namespace": "shop", "annotations": annotations},
            "spec": {
                "serviceAccountName": "orders",
                "containers": [
                    {"name": "app", "image": "app:1"},
                    {"name": "sidecar", "image": "proxy:1", "env": [{"name": "A", "value": "1"}]},
                ],
                "initContainers": [{"name": "migrate", "image": "app:1"}],
            },
        })
    }

    fn view(pod: &Value) -> PodView {
        serde_json::from_value(pod.clone()).unwrap()
    }

    fn excluded() -> Policy {
        Policy {
            excluded: BTreeSet::from(["kube-system".to_owned(), "kafka-e2ee".to_owned()]),
            proxy: Some(ProxySidecar {
                image: "registry.example/kafka-e2ee-proxy:1".into(),
                native: true,
            }),
        }
    }

    /// The test index, prepared, as `decide` looks it up.
    fn prepared() -> Option<Arc<PreparedIndex>> {
        Some(Arc::new(index().into()))
    }

    fn apply(pod: &Value, ops: &[u8]) -> Value {
        let patch: json_patch::Patch = serde_json::from_slice(ops).unwrap();
        let mut out = pod.clone();
        json_patch::patch(&mut out, &patch).unwrap();
        out
    }

    fn inject(pod: &Value) -> (Value, InjectionRecord) {
        match decide(&view(pod), "shop", &excluded(), prepared) {
            Decision::Inject { patch, record, .. } => (apply(pod, &patch), record),
            other => panic!("{other:?}"),
        }
    }

    fn warnings(pod: &Value) -> Vec<String> {
        match decide(&view(pod), "shop", &excluded(), prepared) {
            Decision::Inject { warnings, .. } => warnings,
            other => panic!("{other:?}"),
        }
    }

    /// The files are for the pod's own user and group only; a pod that runs as non-root and
    /// sets no fsGroup is told why it may not read them.
    #[test]
    fn injected_files_are_0440_and_unreadable_setups_are_warned() {
        let mut p = pod(json!({TOPICS_ANNOTATION: "orders"}));
        let (injected, _) = inject(&p);
        assert_eq!(
            injected["spec"]["volumes"][0]["projected"]["defaultMode"],
            0o440
        );
        assert!(warnings(&p).is_empty(), "root (the default): readable");
        p["spec"]["securityContext"] = json!({"runAsUser": 1000});
        let told = warnings(&p);
        assert_eq!(told.len(), 1);
        assert!(
            told[0].contains("app, sidecar") && told[0].contains("fsGroup"),
            "{told:?}"
        );
        p["spec"]["securityContext"]["fsGroup"] = json!(2000);
        assert!(warnings(&p).is_empty(), "the fsGroup can read them");
        let mut c = pod(json!({TOPICS_ANNOTATION: "orders"}));
        c["spec"]["containers"][1]["securityContext"] = json!({"runAsNonRoot": true});
        let told = warnings(&c);
        assert!(
            told[0].contains("sidecar") && !told[0].contains("app,"),
            "{told:?}"
        );
    }

    #[test]
    fn injects_exactly_one_volume_env_and_mount_per_container() {
        let original = pod(json!({TOPICS_ANNOTATION: "orders, payments"}));
        let (injected, record) = inject(&original);
        assert_eq!(
            injected["spec"]["volumes"],
            json!([{"name": "kafka-e2ee", "projected": {"defaultMode": 0o440, "sources": [
                {"configMap": {"name": "kafka-e2ee-client",
                    "items": [{"key": "kmsconnection.vault.yaml", "path": "client.yaml"}]}},
                {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 3600, "path": "vault-token"}},
            ]}}])
        );
        let mount =
            json!([{"name": "kafka-e2ee", "mountPath": "/var/run/kafka-e2ee", "readOnly": true}]);
        let config_env =
            json!({"name": "KAFKA_E2EE_CONFIG", "value": "/var/run/kafka-e2ee/client.yaml"});
        assert_eq!(injected["spec"]["containers"][0]["volumeMounts"], mount);
        assert_eq!(
            injected["spec"]["containers"][0]["env"],
            json!([config_env])
        );
        assert_eq!(
            injected["spec"]["containers"][1]["env"],
            json!([{"name": "A", "value": "1"}, config_env]),
            "existing env is kept, ours appended"
        );
        assert_eq!(injected["spec"]["containers"][1]["volumeMounts"], mount);
        assert!(
            injected["spec"]["initContainers"][0].get("env").is_none(),
            "init containers only by name"
        );
        assert_eq!(
            record,
            InjectionRecord {
                topics: vec!["orders".into(), "payments".into()],
                profile: "kmsconnection.vault.yaml".into(),
                containers: vec!["app".into(), "sidecar".into()],
                mode: None,
            }
        );
        let annotation = injected["metadata"]["annotations"][INJECTED_ANNOTATION]
            .as_str()
            .unwrap();
        assert_eq!(
            serde_json::from_str::<InjectionRecord>(annotation).unwrap(),
            record
        );
        // Everything else is untouched.
        let mut without_ours = injected.clone();
        without_ours["spec"]
            .as_object_mut()
            .unwrap()
            .remove("volumes");
        for c in without_ours["spec"]["containers"].as_array_mut().unwrap() {
            let c = c.as_object_mut().unwrap();
            c.remove("volumeMounts");
            c.insert(
                "env".into(),
                json!(
                    c["env"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|e| e["name"] != "KAFKA_E2EE_CONFIG")
                        .collect::<Vec<_>>()
                ),
            );
            if c["env"].as_array().unwrap().is_empty() {
                c.remove("env");
            }
        }
        without_ours["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove(INJECTED_ANNOTATION);
        assert_eq!(without_ours, original);
    }

    #[test]
    fn reinvocation_and_resubmission_add_nothing() {
        let (injected, _) = inject(&pod(json!({TOPICS_ANNOTATION: "orders"})));
        assert_eq!(
            decide(&view(&injected), "shop", &excluded(), prepared),
            Decision::AlreadyInjected
        );
        // A container added by a later webhook gets what it lacks, and only that.
        let mut grown = injected.clone();
        grown["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "late", "image": "x"}));
        let Decision::Inject { patch, record, .. } =
            decide(&view(&grown), "shop", &excluded(), prepared)
        else {
            panic!()
        };
        assert_eq!(record.containers, ["app", "sidecar", "late"]);
        let again = apply(&grown, &patch);
        assert_eq!(again["spec"]["volumes"].as_array().unwrap().len(), 1);
        assert_eq!(
            again["spec"]["containers"][0]["env"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            again["spec"]["containers"][2]["env"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            decide(&view(&again), "shop", &excluded(), prepared),
            Decision::AlreadyInjected
        );
    }

    #[test]
    fn chosen_containers_only_and_init_containers_by_name() {
        let (injected, record) = inject(&pod(json!({
            TOPICS_ANNOTATION: "orders",
            CONTAINERS_ANNOTATION: "migrate,app",
        })));
        assert_eq!(record.containers, ["migrate", "app"]);
        assert!(
            injected["spec"]["containers"][1]
                .get("volumeMounts")
                .is_none()
        );
        assert!(
            injected["spec"]["initContainers"][0]
                .get("volumeMounts")
                .is_some()
        );
    }

    #[test]
    fn our_injection_is_recognised_after_the_apiserver_defaulted_it() {
        let (mut injected, _) = inject(&pod(json!({TOPICS_ANNOTATION: "orders"})));
        // What the apiserver adds between mutating webhooks.
        injected["spec"]["containers"][0]["volumeMounts"][0]["mountPropagation"] = json!("None");
        injected["spec"]["containers"][0]["terminationMessagePath"] = json!("/dev/termination-log");
        assert_eq!(
            decide(&view(&injected), "shop", &excluded(), prepared),
            Decision::AlreadyInjected
        );
        // But a value of ours changed is a conflict.
        injected["spec"]["volumes"][0]["projected"]["sources"][0]["configMap"]["name"] =
            json!("mine");
        assert!(matches!(
            decide(&view(&injected), "shop", &excluded(), prepared),
            Decision::Problem(Problem {
                reason: ProblemReason::ConflictingConfig,
                ..
            })
        ));
    }

    #[test]
    fn pods_that_do_not_ask_are_left_alone() {
        let cases = [
            (pod(json!({})), "shop", Skip::NotRequested),
            (
                pod(json!({TOPICS_ANNOTATION: " , "})),
                "shop",
                Skip::NotRequested,
            ),
            (
                pod(json!({TOPICS_ANNOTATION: "orders", INJECT_ANNOTATION: "False"})),
                "shop",
                Skip::OptedOut,
            ),
            (
                pod(json!({TOPICS_ANNOTATION: "orders"})),
                "kube-system",
                Skip::ExcludedNamespace,
            ),
            (
                pod(json!({TOPICS_ANNOTATION: "orders"})),
                "kafka-e2ee",
                Skip::ExcludedNamespace,
            ),
        ];
        for (pod, ns, want) in cases {
            // A pod left alone costs no index lookup.
            let no_lookup =
                || -> Option<Arc<PreparedIndex>> { panic!("index looked up for {want:?}") };
            assert_eq!(
                decide(&view(&pod), ns, &excluded(), no_lookup),
                Decision::Skip(want)
            );
        }
    }

    #[test]
    fn aws_web_identity_is_injected_when_the_pod_names_a_role() {
        let (injected, _) = inject(&pod(json!({
            TOPICS_ANNOTATION: "billing",
            AWS_ROLE_ARN_ANNOTATION: "arn:aws:iam::123456789012:role/billing",
        })));
        let env = &injected["spec"]["containers"][0]["env"];
        assert_eq!(
            env[1],
            json!({"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::123456789012:role/billing"})
        );
        assert_eq!(env[2]["value"], "/var/run/kafka-e2ee/aws-token");
        assert_eq!(
            injected["spec"]["volumes"][0]["projected"]["sources"][1],
            json!({"serviceAccountToken": {"audience": "sts.amazonaws.com", "expirationSeconds": 3600, "path": "aws-token"}})
        );
        // Without a role: the SDK's own chain; no token, no role env.
        let (plain, _) = inject(&pod(json!({TOPICS_ANNOTATION: "billing"})));
        assert_eq!(
            plain["spec"]["containers"][0]["env"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn every_problem_has_its_reason_and_an_actionable_message() {
        let mut cases: Vec<(Value, Option<ClientIndex>, ProblemReason, &str)> = vec![
            (
                pod(json!({TOPICS_ANNOTATION: "orders,nope"})),
                Some(index()),
                ProblemReason::UnknownTopic,
                "topic 'nope' that no EncryptedTopic in namespace shop manages",
            ),
            (
                pod(json!({TOPICS_ANNOTATION: "orders"})),
                None,
                ProblemReason::UnknownTopic,
                "namespace shop has no EncryptedTopics",
            ),
            (
                pod(json!({TOPICS_ANNOTATION: "orders,billing"})),
                Some(index()),
                ProblemReason::MixedConnections,
                "'billing' uses KmsConnection/aws, 'orders' uses KmsConnection/vault",
            ),
            (
                pod(json!({TOPICS_ANNOTATION: "legacy"})),
                Some(index()),
                ProblemReason::ConnectionUnavailable,
                "Vault token auth",
            ),
            (
                pod(json!({TOPICS_ANNOTATION: "audit"})),
                Some(index()),
                ProblemReason::NoAccess,
                "keeps its Secret keys in namespace kafka-e2ee",
            ),
            (
                pod(json!({TOPICS_ANNOTATION: "orders", CONTAINERS_ANNOTATION: "app,ghost"})),
                Some(index()),
                ProblemReason::UnknownContainer,
                "names 'ghost' that the pod does not have (it has: app, sidecar, migrate)",
            ),
        ];
        let mut anonymous = pod(json!({TOPICS_ANNOTATION: "orders"}));
        anonymous["spec"]
            .as_object_mut()
            .unwrap()
            .remove("serviceAccountName");
        cases.push((
            anonymous,
            Some(index()),
            ProblemReason::NoServiceAccount,
            "KmsConnection/vault needs a service-account token",
        ));
        for (pod, index, reason, words) in cases {
            match decide(&view(&pod), "shop", &excluded(), || {
                index.clone().map(|index| Arc::new(index.into()))
            }) {
                Decision::Problem(p) => {
                    assert_eq!(p.reason, reason, "{}", p.message);
                    assert!(p.message.contains(words), "{reason:?}: {}", p.message);
                }
                other => panic!("{reason:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn local_encryption_settings_conflict_instead_of_being_overwritten() {
        let mut own_env = pod(json!({TOPICS_ANNOTATION: "orders"}));
        own_env["spec"]["containers"][0]["env"] =
            json!([{"name": "KAFKA_E2EE_CONFIG", "value": "/etc/mine.yaml"}]);
        let mut own_volume = pod(json!({TOPICS_ANNOTATION: "orders"}));
        own_volume["spec"]["volumes"] = json!([{"name": "kafka-e2ee", "emptyDir": {}}]);
        let mut own_mount = pod(json!({TOPICS_ANNOTATION: "orders"}));
        own_mount["spec"]["containers"][1]["volumeMounts"] =
            json!([{"name": "data", "mountPath": "/var/run/kafka-e2ee"}]);
        for (pod, words) in [
            (own_env, "container app sets KAFKA_E2EE_CONFIG itself"),
            (own_volume, "different volume named kafka-e2ee"),
            (own_mount, "container sidecar already mounts something else"),
        ] {
            let Decision::Problem(p) = decide(&view(&pod), "shop", &excluded(), prepared) else {
                panic!("{words}")
            };
            assert_eq!(p.reason, ProblemReason::ConflictingConfig);
            assert!(p.message.contains(words), "{}", p.message);
            assert!(p.message.contains("KIP-317"), "{}", p.message);
        }
    }

    #[test]
    fn pods_without_volumes_or_env_get_the_arrays_created() {
        let bare = json!({
            "metadata": {"name": "p", "annotations": {TOPICS_ANNOTATION: "orders"}},
            "spec": {"serviceAccountName": "default", "containers": [{"name": "c"}]},
        });
        let (injected, _) = inject(&bare);
        assert_eq!(injected["spec"]["volumes"].as_array().unwrap().len(), 1);
        assert_eq!(
            injected["spec"]["containers"][0]["env"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert!(injected["metadata"]["annotations"][INJECTED_ANNOTATION].is_string());
        // Annotation keys with '/' are escaped in the pointer.
        assert_eq!(escape("kafka-e2ee.io/injected"), "kafka-e2ee.io~1injected");
        assert_eq!(escape("a~b"), "a~0b");
    }

    fn proxy_pod(extra: Value) -> Value {
        let mut pod = pod(json!({TOPICS_ANNOTATION: "orders", MODE_ANNOTATION: "proxy"}));
        if let Value::Object(extra) = extra {
            for (k, v) in extra {
                pod["metadata"]["annotations"][k] = v;
            }
        }
        pod
    }

    /// Proxy mode: the application containers get only the proxy's address; the proxy (a
    /// native sidecar, first of the init containers) gets the volume, and nothing is added
    /// again on reinvocation.
    #[test]
    fn proxy_mode_injects_the_sidecar_and_points_the_application_at_it() {
        let pod = proxy_pod(json!({}));
        let (injected, record) = inject(&pod);
        assert_eq!(record.mode.as_deref(), Some("proxy"));
        let app = &injected["spec"]["containers"][0];
        assert_eq!(
            app["env"],
            json!([{"name": "KAFKA_BOOTSTRAP_SERVERS", "value": PROXY_BOOTSTRAP}])
        );
        assert!(
            app.get("volumeMounts").is_none(),
            "the application reads no key material"
        );
        let proxy = &injected["spec"]["initContainers"][0];
        assert_eq!(proxy["name"], PROXY_CONTAINER);
        assert_eq!(proxy["restartPolicy"], "Always");
        assert_eq!(proxy["image"], "registry.example/kafka-e2ee-proxy:1");
        assert_eq!(proxy["volumeMounts"][0]["mountPath"], MOUNT_PATH);
        assert_eq!(proxy["env"][0]["name"], CONFIG_ENV);
        assert_eq!(proxy["securityContext"]["runAsNonRoot"], true);
        assert_eq!(proxy["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(
            proxy["readinessProbe"]["httpGet"]["port"],
            PROXY_HEALTH_PORT
        );
        // The existing init container is still there, after the proxy.
        assert_eq!(injected["spec"]["initContainers"][1]["name"], "migrate");
        assert!(matches!(
            decide(&view(&injected), "shop", &excluded(), prepared),
            Decision::AlreadyInjected
        ));
    }

    #[test]
    fn proxy_mode_as_a_regular_container_a_named_variable_and_its_refusals() {
        let mut policy = excluded();
        policy.proxy.as_mut().unwrap().native = false;
        let pod = proxy_pod(json!({BOOTSTRAP_ENV_ANNOTATION: "BROKERS"}));
        let Decision::Inject { patch, .. } = decide(&view(&pod), "shop", &policy, prepared) else {
            panic!()
        };
        let injected = apply(&pod, &patch);
        let containers = injected["spec"]["containers"].as_array().unwrap();
        let proxy = containers.last().unwrap();
        assert_eq!(proxy["name"], PROXY_CONTAINER);
        assert!(proxy.get("restartPolicy").is_none());
        assert_eq!(containers[0]["env"][0]["name"], "BROKERS");
        assert!(matches!(
            decide(&view(&injected), "shop", &policy, prepared),
            Decision::AlreadyInjected
        ));

        // The application sets the variable itself: it would go around the proxy.
        let mut own = proxy_pod(json!({}));
        own["spec"]["containers"][0]["env"] =
            json!([{"name": "KAFKA_BOOTSTRAP_SERVERS", "value": "kafka:9092"}]);
        assert!(matches!(
            decide(&view(&own), "shop", &policy, prepared),
            Decision::Problem(Problem {
                reason: ProblemReason::ConflictingConfig,
                ..
            })
        ));
        // No proxy image configured; an unknown mode.
        policy.proxy = None;
        assert!(matches!(
            decide(&view(&pod), "shop", &policy, prepared),
            Decision::Problem(Problem {
                reason: ProblemReason::ProxyUnavailable,
                ..
            })
        ));
        let odd = proxy_pod(json!({MODE_ANNOTATION: "sidecar"}));
        assert!(matches!(
            decide(&view(&odd), "shop", &excluded(), prepared),
            Decision::Problem(Problem {
                reason: ProblemReason::MalformedPod,
                ..
            })
        ));
    }

    /// The proxy's own Kafka credentials: a Secret of the pod's namespace, mounted into the
    /// proxy only (never the application), named to the proxy by one variable.
    #[test]
    fn a_named_kafka_secret_is_mounted_into_the_proxy_only() {
        let pod = proxy_pod(json!({PROXY_KAFKA_SECRET_ANNOTATION: "orders-kafka-user"}));
        let (injected, _) = inject(&pod);
        let volumes = injected["spec"]["volumes"].as_array().unwrap();
        let secret = volumes
            .iter()
            .find(|v| v["name"] == KAFKA_SECRET_VOLUME)
            .unwrap();
        assert_eq!(secret["secret"]["secretName"], "orders-kafka-user");
        assert_eq!(secret["secret"]["defaultMode"], INJECTED_FILE_MODE);
        let proxy = &injected["spec"]["initContainers"][0];
        assert_eq!(proxy["volumeMounts"][1]["mountPath"], KAFKA_SECRET_PATH);
        assert!(proxy["env"].as_array().unwrap().contains(
            &json!({"name": "KAFKA_E2EE_PROXY_UPSTREAM_CREDENTIALS", "value": KAFKA_SECRET_PATH})
        ));
        for c in injected["spec"]["containers"].as_array().unwrap() {
            assert!(
                c.get("volumeMounts")
                    .is_none_or(|m| !m.to_string().contains(KAFKA_SECRET_VOLUME))
            );
        }
        assert!(matches!(
            decide(&view(&injected), "shop", &excluded(), prepared),
            Decision::AlreadyInjected
        ));
        // Client mode has no proxy to give them to; a name that is no Secret's.
        let mut client_mode = pod.clone();
        client_mode["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove(MODE_ANNOTATION);
        let bad_name = proxy_pod(json!({PROXY_KAFKA_SECRET_ANNOTATION: "Orders_User"}));
        for (pod, words) in [
            (client_mode, "needs kafka-e2ee.io/mode: proxy"),
            (bad_name, "not a Secret name"),
        ] {
            let Decision::Problem(p) = decide(&view(&pod), "shop", &excluded(), prepared) else {
                panic!("{words}")
            };
            assert_eq!(p.reason, ProblemReason::MalformedPod);
            assert!(p.message.contains(words), "{}", p.message);
        }
    }

    /// Client mode: the application's own Kafka credentials, a Secret of the pod's namespace
    /// mounted into every injected container (never copied: the kubelet mounts it), named to
    /// the client library by one variable; idempotent; refused in proxy mode and when it
    /// would replace a mount the container has.
    #[test]
    fn the_applications_kafka_secret_is_mounted_into_its_containers() {
        let p =
            pod(json!({TOPICS_ANNOTATION: "orders", KAFKA_SECRET_ANNOTATION: "orders-kafka-user"}));
        let (injected, _) = inject(&p);
        let secret = injected["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == KAFKA_SECRET_VOLUME)
            .unwrap()
            .clone();
        assert_eq!(
            secret["secret"],
            json!({"secretName": "orders-kafka-user", "defaultMode": INJECTED_FILE_MODE})
        );
        for c in injected["spec"]["containers"].as_array().unwrap() {
            let mounts = c["volumeMounts"].as_array().unwrap();
            assert!(mounts.contains(&json!({"name": KAFKA_SECRET_VOLUME, "mountPath": KAFKA_SECRET_PATH, "readOnly": true})), "{c}");
            assert!(
                c["env"]
                    .as_array()
                    .unwrap()
                    .contains(&json!({"name": KAFKA_CREDENTIALS_ENV, "value": KAFKA_SECRET_PATH}))
            );
        }
        assert!(matches!(
            decide(&view(&injected), "shop", &excluded(), prepared),
            Decision::AlreadyInjected
        ));

        let in_proxy_mode = proxy_pod(json!({KAFKA_SECRET_ANNOTATION: "orders-kafka-user"}));
        let mut taken = p.clone();
        taken["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "certs", "mountPath": KAFKA_SECRET_PATH}]);
        let bad_name =
            pod(json!({TOPICS_ANNOTATION: "orders", KAFKA_SECRET_ANNOTATION: "../secret"}));
        for (pod, reason, words) in [
            (
                in_proxy_mode,
                ProblemReason::MalformedPod,
                PROXY_KAFKA_SECRET_ANNOTATION,
            ),
            (
                taken,
                ProblemReason::ConflictingConfig,
                "already mounts something else at /var/run/kafka-e2ee-kafka",
            ),
            (bad_name, ProblemReason::MalformedPod, "not a Secret name"),
        ] {
            let Decision::Problem(problem) = decide(&view(&pod), "shop", &excluded(), prepared)
            else {
                panic!("{words}")
            };
            assert_eq!(problem.reason, reason);
            assert!(problem.message.contains(words), "{}", problem.message);
        }
        // The library reads the variable the webhook sets.
        assert_eq!(
            KAFKA_CREDENTIALS_ENV,
            kafka_e2ee_client::config::KAFKA_CREDENTIALS_ENV
        );
    }
}
