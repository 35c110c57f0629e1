//! One AdmissionReview body in, one HTTP status and AdmissionReview body out; no I/O, so
//! every outcome (and every malformed body) is unit-testable and fuzzable.
//!
//! The review types are our own, not kube's. `/mutate` parses the review and the pod's view
//! ([`inject::PodView`]) in one pass; any body that does not parse that way falls back to the
//! general path, where the object stays raw JSON until the handler that needs it parses it
//! into exactly the type it needs (a pod's view, an `EncryptedTopic` for validation), which
//! gives malformed bodies their exact answer. The patch goes out as base64 text (the
//! apiserver's encoding of `[]byte`), written straight into the answer.

use std::sync::Arc;

use kafka_e2ee_crds::KmsRef;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::inject::{self, Decision, PreparedIndex};
use crate::validate::{self, Kind};

/// What the apiserver is doing to the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

#[derive(Debug, Deserialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    pub kind: String,
}

/// The request of an AdmissionReview, as far as the webhooks read it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
    pub uid: String,
    pub kind: GroupVersionKind,
    #[serde(default)]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    #[serde(default, borrow)]
    pub object: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub old_object: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn<'a> {
    api_version: String,
    kind: String,
    #[serde(default, borrow)]
    request: Option<Request<'a>>,
}

/// A review whose object is parsed as a pod in the same pass (the mutating webhook's steady
/// state): the object's bytes are read once, not once to delimit them and again to parse.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodReviewIn {
    api_version: String,
    kind: String,
    #[serde(default)]
    request: Option<PodRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodRequest {
    uid: String,
    kind: GroupVersionKind,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    #[serde(default)]
    object: Option<inject::PodView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'a str,
    kind: &'static str,
    response: Response,
}

/// The answer to one request.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    uid: String,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
    /// RFC 6902 operations as JSON. Written by [`answer`] as `patch` (base64, straight into
    /// the body: it needs no escaping, and it is most of the answer's bytes) and `patchType`.
    #[serde(skip)]
    patch: Option<Vec<u8>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
struct Status {
    code: u16,
    reason: &'static str,
    message: String,
}

impl Response {
    fn allow(request: &Request<'_>) -> Self {
        Self::allowed(request.uid.clone())
    }

    /// Admits the request `uid` unchanged.
    fn allowed(uid: String) -> Self {
        Self {
            uid,
            allowed: true,
            ..Self::default()
        }
    }

    fn deny(mut self, message: String) -> Self {
        self.allowed = false;
        self.status = Some(Status {
            code: 403,
            reason: "Forbidden",
            message,
        });
        self
    }

    fn with_patch(mut self, operations: Vec<u8>) -> Self {
        self.patch = Some(operations);
        self
    }
}

/// The two endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Webhook {
    Mutate,
    Validate,
}

impl Webhook {
    pub const ALL: [Self; 2] = [Self::Mutate, Self::Validate];

    /// Its place in [`Webhook::ALL`].
    pub fn index(self) -> usize {
        match self {
            Self::Mutate => 0,
            Self::Validate => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mutate => "mutate",
            Self::Validate => "validate",
        }
    }
}

/// What became of a request. Bounded (metric labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Admitted unchanged.
    Allowed,
    /// Admitted with a patch.
    Patched,
    /// Refused.
    Denied,
    /// Admitted unchanged, with a warning (problem mode `warn`).
    Warned,
    /// Not an AdmissionReview: HTTP 400.
    Malformed,
}

impl Outcome {
    pub const ALL: [Self; 5] = [
        Self::Allowed,
        Self::Patched,
        Self::Denied,
        Self::Warned,
        Self::Malformed,
    ];

    /// Its place in [`Outcome::ALL`].
    pub fn index(self) -> usize {
        match self {
            Self::Allowed => 0,
            Self::Patched => 1,
            Self::Denied => 2,
            Self::Warned => 3,
            Self::Malformed => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Patched => "patched",
            Self::Denied => "denied",
            Self::Warned => "warned",
            Self::Malformed => "malformed",
        }
    }
}

/// What the mutating webhook does when a pod asks for injection it cannot get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProblemMode {
    /// Refuse the pod with the problem as the message.
    Deny,
    /// Admit it without injection, with the problem as a warning to the client.
    Warn,
}

/// What the webhooks read from the cluster (watched, never fetched per request): a
/// namespace's client index, and the kind of backend a KMS connection holds.
pub trait IndexSource: Send + Sync {
    fn index(&self, namespace: &str) -> Option<Arc<PreparedIndex>>;

    /// The backend kind ([`kafka_e2ee_crds::KmsBackend::kind`]) of the connection that
    /// `kms_ref` names from `namespace`; `None` when unknown (not created yet).
    fn connection_kind(&self, namespace: &str, kms_ref: &KmsRef) -> Option<&'static str> {
        let _ = (namespace, kms_ref);
        None
    }
}

/// What the handlers need besides the body.
pub struct Admission<I> {
    pub indexes: I,
    /// Excluded namespaces and the proxy sidecar.
    pub policy: inject::Policy,
    pub problem_mode: ProblemMode,
}

#[derive(Debug)]
pub struct Handled {
    /// 200 for any AdmissionReview answer (allowed or not), 400 for a malformed body.
    pub status: u16,
    pub body: Vec<u8>,
    pub outcome: Outcome,
    /// Why it was denied or warned about (bounded names), if it was.
    pub reasons: Vec<&'static str>,
}

impl<I: IndexSource> Admission<I> {
    pub fn handle(&self, webhook: Webhook, body: &[u8]) -> Handled {
        if webhook == Webhook::Mutate
            && let Some(handled) = self.mutate_in_one_pass(body)
        {
            return handled;
        }
        self.handle_in_two_passes(webhook, body)
    }

    /// The review first, with its object as raw JSON, then the object as the handler needs
    /// it: every body, malformed ones included, gets its exact answer here.
    fn handle_in_two_passes(&self, webhook: Webhook, body: &[u8]) -> Handled {
        let (api_version, request) = match parse(body) {
            Ok(parsed) => parsed,
            Err(message) => {
                return Handled {
                    status: 400,
                    body: message.into_bytes(),
                    outcome: Outcome::Malformed,
                    reasons: Vec::new(),
                };
            }
        };
        let (response, outcome, reasons) = match webhook {
            Webhook::Mutate => self.mutate(&request),
            Webhook::Validate => validate(&request, |namespace, kms_ref| {
                self.indexes.connection_kind(namespace, kms_ref)
            }),
        };
        answer(&api_version, response, outcome, reasons)
    }

    /// `/mutate` with the pod parsed in the same pass as the review. `None` when the body does
    /// not parse that way (not a review, not a pod, not JSON): the two-pass path then gives
    /// the exact answer (400, or a malformed pod refused), so the outcome is the same either
    /// way and only the common case is faster.
    fn mutate_in_one_pass(&self, body: &[u8]) -> Option<Handled> {
        // One UTF-8 check of the whole body, instead of one per string while parsing.
        let text = std::str::from_utf8(body).ok()?;
        let review: PodReviewIn = serde_json::from_str(text).ok()?;
        if !is_admission_review(&review.kind, &review.api_version) {
            return None;
        }
        let request = review.request?;
        let allowed = Response::allowed(request.uid);
        let is_pod_create = is_pod_create(&request.kind, request.operation, &request.sub_resource);
        let (response, outcome, reasons) = match request.object.filter(|_| is_pod_create) {
            Some(pod) => self.mutate_pod(allowed, &pod, request.namespace.as_deref()),
            None => (allowed, Outcome::Allowed, Vec::new()),
        };
        Some(answer(&review.api_version, response, outcome, reasons))
    }

    fn mutate(&self, request: &Request<'_>) -> (Response, Outcome, Vec<&'static str>) {
        let allowed = Response::allow(request);
        let pod_create = is_pod_create(&request.kind, request.operation, &request.sub_resource);
        let Some(object) = request.object.filter(|_| pod_create) else {
            return (allowed, Outcome::Allowed, Vec::new());
        };
        let pod = match inject::PodView::parse(object.get()) {
            Ok(pod) => pod,
            Err(e) => {
                let message = format!("kafka-e2ee: the pod does not parse: {e}");
                return (allowed.deny(message), Outcome::Denied, vec!["MalformedPod"]);
            }
        };
        self.mutate_pod(allowed, &pod, request.namespace.as_deref())
    }

    fn mutate_pod(
        &self,
        allowed: Response,
        pod: &inject::PodView,
        namespace: Option<&str>,
    ) -> (Response, Outcome, Vec<&'static str>) {
        // The request's namespace is authoritative (a pod's own may be empty).
        let namespace = namespace.unwrap_or_default();
        let index = || self.indexes.index(namespace);
        match inject::decide(pod, namespace, &self.policy, index) {
            Decision::Skip(_) | Decision::AlreadyInjected => (allowed, Outcome::Allowed, vec![]),
            Decision::Inject {
                patch, warnings, ..
            } => {
                let mut patched = allowed.with_patch(patch);
                if !warnings.is_empty() {
                    patched.warnings = Some(warnings);
                }
                (patched, Outcome::Patched, vec![])
            }
            Decision::Problem(problem) => {
                let reason = problem.reason.as_str();
                match self.problem_mode {
                    ProblemMode::Deny => (
                        allowed.deny(format!("kafka-e2ee: {}", problem.message)),
                        Outcome::Denied,
                        vec![reason],
                    ),
                    ProblemMode::Warn => {
                        let mut warned = allowed;
                        warned.warnings = Some(vec![format!(
                            "kafka-e2ee did not inject encryption settings: {}",
                            problem.message
                        )]);
                        (warned, Outcome::Warned, vec![reason])
                    }
                }
            }
        }
    }
}

/// Whether a body's kind and API version are an AdmissionReview's.
fn is_admission_review(kind: &str, api_version: &str) -> bool {
    kind == "AdmissionReview" && api_version.starts_with("admission.k8s.io/")
}

/// Whether the mutating webhook injects into this object: a pod being created (not one of its
/// subresources).
fn is_pod_create(
    kind: &GroupVersionKind,
    operation: Operation,
    sub_resource: &Option<String>,
) -> bool {
    kind.group.is_empty()
        && kind.kind == "Pod"
        && operation == Operation::Create
        && sub_resource.is_none()
}

/// The HTTP answer carrying `response`.
fn answer(
    api_version: &str,
    mut response: Response,
    outcome: Outcome,
    reasons: Vec<&'static str>,
) -> Handled {
    let patch = response.patch.take();
    let review = ReviewOut {
        api_version,
        kind: "AdmissionReview",
        response,
    };
    match serde_json::to_vec(&review) {
        Ok(mut body) => {
            if let Some(patch) = patch {
                append_patch(&mut body, &patch);
            }
            Handled {
                status: 200,
                body,
                outcome,
                reasons,
            }
        }
        // Serializing our own response cannot fail in practice; say so if it does.
        Err(e) => Handled {
            status: 500,
            body: format!("cannot serialize the response: {e}").into_bytes(),
            outcome: Outcome::Malformed,
            reasons: Vec::new(),
        },
    }
}

/// Adds `"patchType":"JSONPatch","patch":"<base64>"` to the response of a serialized
/// review: the response is the review's last field, so the body ends with its `}}`.
fn append_patch(body: &mut Vec<u8>, patch: &[u8]) {
    const FIELDS: &[u8] = br#","patchType":"JSONPatch","patch":""#;
    debug_assert!(body.ends_with(b"}}"));
    body.truncate(body.len().saturating_sub(2));
    body.extend_from_slice(FIELDS);
    let start = body.len();
    body.resize(start + patch.len().div_ceil(3) * 4, 0);
    // The buffer is exactly as long as padded base64 needs.
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(patch, &mut body[start..])
        .unwrap_or_default();
    body.truncate(start + written);
    body.extend_from_slice(b"\"}}");
}

fn validate(
    request: &Request<'_>,
    connection_kind: impl Fn(&str, &KmsRef) -> Option<&'static str>,
) -> (Response, Outcome, Vec<&'static str>) {
    let allowed = Response::allow(request);
    let kind = (request.kind.group == kafka_e2ee_crds::GROUP)
        .then(|| Kind::from_name(&request.kind.kind))
        .flatten();
    let Some(kind) = kind.filter(|_| request.sub_resource.is_none()) else {
        return (allowed, Outcome::Allowed, Vec::new());
    };
    let namespace = request.namespace.as_deref().unwrap_or_default();
    let lookup = |kms_ref: &KmsRef| connection_kind(namespace, kms_ref);
    match validate::review(
        kind,
        request.operation,
        request.object,
        request.old_object,
        lookup,
    ) {
        Ok(()) => (allowed, Outcome::Allowed, Vec::new()),
        Err(refusal) => (
            allowed.deny(refusal.message),
            Outcome::Denied,
            refusal.reasons,
        ),
    }
}

/// The API version and request of an AdmissionReview body, or a message for the 400 answer.
pub fn parse(body: &[u8]) -> Result<(String, Request<'_>), String> {
    let review: ReviewIn<'_> =
        serde_json::from_slice(body).map_err(|e| format!("malformed AdmissionReview: {e}"))?;
    if !is_admission_review(&review.kind, &review.api_version) {
        return Err(format!(
            "malformed AdmissionReview: got kind {} of {}, want AdmissionReview of admission.k8s.io",
            review.kind, review.api_version
        ));
    }
    let request = review
        .request
        .ok_or_else(|| "malformed AdmissionReview: it has no request".to_owned())?;
    Ok((review.api_version, request))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use kafka_e2ee_crds::injection::{ClientIndex, INDEX_FORMAT, IndexedTopic, Profile};
    use serde_json::{Value, json};

    use super::*;

    struct Indexes(HashMap<String, Arc<PreparedIndex>>);

    impl IndexSource for Indexes {
        fn index(&self, namespace: &str) -> Option<Arc<PreparedIndex>> {
            self.0.get(namespace).cloned()
        }
    }

    fn admission(problem_mode: ProblemMode) -> Admission<Indexes> {
        let index = ClientIndex {
            format: INDEX_FORMAT,
            topics: BTreeMap::from([(
                "orders".into(),
                IndexedTopic {
                    encrypted_topic: "orders".into(),
                    profile: "kmsconnection.ks.yaml".into(),
                },
            )]),
            profiles: BTreeMap::from([(
                "kmsconnection.ks.yaml".into(),
                Profile {
                    kms_ref: "KmsConnection/ks".into(),
                    provider: "keystore".into(),
                    sources: vec![],
                    unavailable: None,
                },
            )]),
        };
        Admission {
            indexes: Indexes(HashMap::from([("shop".to_owned(), Arc::new(index.into()))])),
            policy: inject::Policy {
                excluded: std::collections::BTreeSet::from(["kube-system".to_owned()]),
                proxy: None,
            },
            problem_mode,
        }
    }

    fn pod_review(api_version: &str, topics: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": api_version, "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "shop", "operation": "CREATE",
                "userInfo": {"username": "alice"},
                "object": {
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "app", "annotations": {"kafka-e2ee.io/topics": topics}},
                    "spec": {"containers": [{"name": "app", "image": "app:1"}]},
                },
                "dryRun": false,
            },
        }))
        .unwrap()
    }

    fn response(handled: &Handled) -> Value {
        let review: Value = serde_json::from_slice(&handled.body).unwrap();
        review["response"].clone()
    }

    #[test]
    fn a_pod_that_asks_gets_a_json_patch_echoing_uid_and_version() {
        for version in ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"] {
            let handled = admission(ProblemMode::Deny)
                .handle(Webhook::Mutate, &pod_review(version, "orders"));
            assert_eq!((handled.status, handled.outcome), (200, Outcome::Patched));
            let review: Value = serde_json::from_slice(&handled.body).unwrap();
            assert_eq!(review["apiVersion"], version);
            let r = &review["response"];
            assert_eq!(r["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
            assert_eq!(r["allowed"], true);
            assert_eq!(r["patchType"], "JSONPatch");
            let patch: Value = serde_json::from_slice(&patch_bytes(&r["patch"])).unwrap();
            assert!(patch.as_array().unwrap().len() >= 3, "{patch}");
        }
    }

    /// The patch's bytes: kube serializes them as an array of numbers (which the apiserver
    /// accepts for a []byte field); base64 text is decoded too.
    fn patch_bytes(patch: &Value) -> Vec<u8> {
        match patch {
            Value::String(text) => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .unwrap()
            }
            Value::Array(bytes) => bytes.iter().map(|b| b.as_u64().unwrap() as u8).collect(),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn problems_deny_or_warn_as_configured() {
        let denied = admission(ProblemMode::Deny)
            .handle(Webhook::Mutate, &pod_review("admission.k8s.io/v1", "nope"));
        assert_eq!(
            (denied.outcome, denied.reasons.as_slice()),
            (Outcome::Denied, ["UnknownTopic"].as_slice())
        );
        let r = response(&denied);
        assert_eq!(r["allowed"], false);
        assert_eq!(r["status"]["code"], 403);
        assert!(
            r["status"]["message"]
                .as_str()
                .unwrap()
                .starts_with("kafka-e2ee: kafka-e2ee.io/topics names topic 'nope'")
        );
        let warned = admission(ProblemMode::Warn)
            .handle(Webhook::Mutate, &pod_review("admission.k8s.io/v1", "nope"));
        assert_eq!(warned.outcome, Outcome::Warned);
        let r = response(&warned);
        assert_eq!(r["allowed"], true);
        assert!(r.get("patch").is_none());
        assert!(r["warnings"][0].as_str().unwrap().contains("'nope'"));
    }

    #[test]
    fn malformed_bodies_are_400_with_a_message() {
        let a = admission(ProblemMode::Deny);
        for (body, words) in [
            (&b""[..], "malformed AdmissionReview"),
            (b"{", "malformed AdmissionReview"),
            (b"[]", "malformed AdmissionReview"),
            (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#, "has no request"),
            (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":1}}"#, "malformed"),
            (br#"{"apiVersion":"v1","kind":"Pod"}"#, "got kind Pod of v1, want AdmissionReview of admission.k8s.io"),
        ] {
            for webhook in [Webhook::Mutate, Webhook::Validate] {
                let handled = a.handle(webhook, body);
                assert_eq!((handled.status, handled.outcome), (400, Outcome::Malformed));
                let text = String::from_utf8(handled.body).unwrap();
                assert!(text.contains(words), "{text}");
            }
        }
    }

    #[test]
    fn one_pass_and_two_pass_mutations_answer_alike() {
        let injected = pod_review("admission.k8s.io/v1", "orders");
        let review: Value = serde_json::from_slice(&injected).unwrap();
        let variant = |edit: &dyn Fn(&mut Value)| {
            let mut review = review.clone();
            edit(&mut review);
            serde_json::to_vec(&review).unwrap()
        };
        let bodies = [
            injected.clone(),
            pod_review("admission.k8s.io/v1beta1", "orders"),
            pod_review("admission.k8s.io/v1", "nope"),
            pod_review("admission.k8s.io/v1", ""),
            variant(&|r| r["request"]["operation"] = "UPDATE".into()),
            variant(&|r| r["request"]["subResource"] = "status".into()),
            variant(&|r| r["request"]["kind"]["kind"] = "Deployment".into()),
            variant(&|r| r["request"]["object"]["spec"]["containers"] = json!("not a list")),
            variant(&|r| r["request"]["object"] = json!([1, 2])),
            variant(&|r| r["request"]["namespace"] = "kube-system".into()),
            variant(&|r| {
                r["request"].as_object_mut().unwrap().remove("object");
            }),
            variant(&|r| r["kind"] = "Pod".into()),
            variant(&|r| {
                r.as_object_mut().unwrap().remove("request");
            }),
            b"not json".to_vec(),
            b"{\"apiVersion\": \"admission.k8s.io/v1\", \"kind\": \"Admission\xffReview\"}"
                .to_vec(),
        ];
        let admission = admission(ProblemMode::Deny);
        let mut one_pass = 0;
        for body in &bodies {
            let fast = admission.mutate_in_one_pass(body);
            one_pass += usize::from(fast.is_some());
            let fast = admission.handle(Webhook::Mutate, body);
            let exact = admission.handle_in_two_passes(Webhook::Mutate, body);
            assert_eq!(
                (fast.status, &fast.body, fast.outcome, &fast.reasons),
                (exact.status, &exact.body, exact.outcome, &exact.reasons),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // The common cases take the one pass; the malformed ones fall back.
        assert!(
            admission.mutate_in_one_pass(&injected).is_some(),
            "a pod to inject is answered in one pass"
        );
        assert_eq!(one_pass, 9, "pods, other kinds and operations: one pass");
    }

    #[test]
    fn other_kinds_and_operations_pass_untouched() {
        let mut review: Value =
            serde_json::from_slice(&pod_review("admission.k8s.io/v1", "nope")).unwrap();
        review["request"]["operation"] = "UPDATE".into();
        let handled = admission(ProblemMode::Deny)
            .handle(Webhook::Mutate, &serde_json::to_vec(&review).unwrap());
        assert_eq!(handled.outcome, Outcome::Allowed);
        let handled = admission(ProblemMode::Deny).handle(
            Webhook::Validate,
            &pod_review("admission.k8s.io/v1", "nope"),
        );
        assert_eq!(
            handled.outcome,
            Outcome::Allowed,
            "the validating webhook ignores pods"
        );
    }

    #[test]
    fn invalid_encrypted_topics_are_denied_with_the_rule() {
        let body = serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u1",
                "kind": {"group": "kafka-e2ee.io", "version": "v1alpha1", "kind": "EncryptedTopic"},
                "resource": {"group": "kafka-e2ee.io", "version": "v1alpha1", "resource": "encryptedtopics"},
                "namespace": "shop", "operation": "CREATE", "userInfo": {},
                "object": {
                    "apiVersion": "kafka-e2ee.io/v1alpha1", "kind": "EncryptedTopic",
                    "metadata": {"name": "orders", "namespace": "shop"},
                    "spec": {"partitions": 3, "kmsRef": {"kind": "KmsConnection", "name": "v"},
                             "deletionPolicy": "Delete"},
                },
            },
        }))
        .unwrap();
        let handled = admission(ProblemMode::Deny).handle(Webhook::Validate, &body);
        assert_eq!(
            (handled.outcome, handled.reasons.as_slice()),
            (Outcome::Denied, ["DeleteNotConfirmed"].as_slice())
        );
        assert!(
            response(&handled)["status"]["message"]
                .as_str()
                .unwrap()
                .contains("set spec.confirmDeletion to 'orders'")
        );
    }
}
