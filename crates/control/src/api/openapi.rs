//! The OpenAPI 3.1 document at `/v1/openapi.json`, generated from the code: schemas come
//! from the model types' `ToSchema` derives, and every route the router serves is listed
//! here from the same `Resource` constants (a test checks the two agree).

use axum::Json;
use axum::extract::State;
use lingjing_model::snapshot::{DnsSnapshot, EdgeSnapshot, Heartbeat, Role};
use lingjing_model::tenant::{ApiKeyInfo, NewApiKey, WhoAmI};
use lingjing_model::{
    Allocation, DnsRecord, IpPool, Line, LinePrefix, Node, Region, Service, Site, Tenant,
};
use serde::Serialize;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::ArrayBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr,
    Required, ResponseBuilder, Schema,
};
use utoipa::{PartialSchema, ToSchema};

use super::AppState;
use super::ipam::AllocateRequest;
use super::lines::ImportSummary;
use crate::error::ErrorBody;
use crate::resource::Resource;

/// One version of the edge snapshot, as `GET /v1/snapshots/edge` returns it.
#[derive(Serialize, ToSchema)]
pub struct EdgeSnapshotResponse {
    pub version: u64,
    pub role: Role,
    pub generated_at: String,
    pub body: EdgeSnapshot,
}

/// One version of the DNS snapshot, as `GET /v1/snapshots/dns` returns it.
#[derive(Serialize, ToSchema)]
pub struct DnsSnapshotResponse {
    pub version: u64,
    pub role: Role,
    pub generated_at: String,
    pub body: DnsSnapshot,
}

/// One version of the `storage` or `s3` snapshot, as `GET /v1/snapshots/{storage,s3}`
/// returns it.
#[derive(Serialize, ToSchema)]
pub struct StorageSnapshotResponse {
    pub version: u64,
    pub role: Role,
    pub generated_at: String,
    pub body: lingjing_model::snapshot::StorageSnapshot,
}

pub async fn serve(State(_): State<AppState>) -> Json<OpenApi> {
    Json(document())
}

fn schema_ref(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

fn array_of(name: &str) -> RefOr<Schema> {
    RefOr::T(Schema::Array(
        ArrayBuilder::new().items(schema_ref(name)).build(),
    ))
}

/// A small builder of operations that keeps the document terse.
struct Op {
    method: HttpMethod,
    path: String,
    builder: OperationBuilder,
}

impl Op {
    fn new(method: HttpMethod, path: &str, tag: &str, id: &str, summary: &str) -> Op {
        let mut builder = OperationBuilder::new()
            .tag(tag)
            .operation_id(Some(id))
            .summary(Some(summary));
        for segment in path.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                builder = builder.parameter(
                    ParameterBuilder::new()
                        .name(name)
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .schema(Some(String::schema())),
                );
            }
        }
        let error = |d: &str| {
            ResponseBuilder::new()
                .description(d)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(schema_ref("ErrorBody")))
                        .build(),
                )
                .build()
        };
        builder = builder
            .response("400", error("Malformed request"))
            .response("401", error("Missing or invalid token"))
            .response("403", error("Not allowed for this caller"));
        Op {
            method,
            path: path.to_owned(),
            builder,
        }
    }

    fn query(mut self, name: &str, description: &str, schema: RefOr<Schema>) -> Op {
        self.builder = self.builder.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(schema)),
        );
        self
    }

    fn body(mut self, content_type: &str, schema: RefOr<Schema>) -> Op {
        self.builder = self.builder.request_body(Some(
            RequestBodyBuilder::new()
                .content(
                    content_type,
                    ContentBuilder::new().schema(Some(schema)).build(),
                )
                .required(Some(Required::True))
                .build(),
        ));
        self
    }

    fn ok(mut self, status: &str, description: &str, schema: Option<RefOr<Schema>>) -> Op {
        let mut response = ResponseBuilder::new().description(description);
        if let Some(schema) = schema {
            response = response.content(
                "application/json",
                ContentBuilder::new().schema(Some(schema)).build(),
            );
        }
        self.builder = self.builder.response(status, response.build());
        self
    }

    fn err(mut self, status: &str, description: &str) -> Op {
        self.builder = self.builder.response(
            status,
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(schema_ref("ErrorBody")))
                        .build(),
                )
                .build(),
        );
        self
    }

    fn add_to(self, paths: &mut Paths) {
        paths.add_path_operation(self.path, vec![self.method], self.builder.build());
    }
}

/// The five operations of a resource kind.
fn crud_ops<R: Resource>() -> Vec<Op> {
    let (kind, plural) = (R::KIND, R::PLURAL);
    let view = <R::View as ToSchema>::name().into_owned();
    let input = <R as ToSchema>::name().into_owned();
    let col = format!("/v1/{plural}");
    let one = format!("/v1/{plural}/{{id}}");
    vec![
        Op::new(
            HttpMethod::Get,
            &col,
            plural,
            &format!("list_{plural}"),
            &format!("List {plural}"),
        )
        .query(
            "limit",
            "How many, 1 to 10,000 (default: all)",
            u64::schema(),
        )
        .query("offset", "How many to skip first", u64::schema())
        .query(
            "q",
            "Only those whose id or tenant (services: or a hostname) contains this, ignoring case; at most 200 characters",
            String::schema(),
        )
        .query(
            "sort",
            "`id` (default) or `tenant` (then id; kinds owned by tenants)",
            String::schema(),
        )
        .query("dir", "`asc` (default) or `desc`", String::schema())
        .ok(
            "200",
            &format!("The {plural} the caller may see (`X-Total-Count`: how many in all)"),
            Some(array_of(&view)),
        ),
        Op::new(
            HttpMethod::Post,
            &col,
            plural,
            &format!("create_{kind}"),
            &format!("Create a {kind}"),
        )
        .body("application/json", schema_ref(&input))
        .ok("201", "Created", Some(schema_ref(&view)))
        .err("409", "Already exists, or a hostname is taken")
        .err("422", "Invalid: `field` names the offending field"),
        Op::new(
            HttpMethod::Get,
            &one,
            plural,
            &format!("get_{kind}"),
            &format!("Show a {kind}"),
        )
        .ok("200", "Found", Some(schema_ref(&view)))
        .err("404", "No such resource"),
        Op::new(
            HttpMethod::Put,
            &one,
            plural,
            &format!("replace_{kind}"),
            &format!("Replace a {kind}"),
        )
        .body("application/json", schema_ref(&input))
        .ok("200", "Replaced", Some(schema_ref(&view)))
        .err("404", "No such resource")
        .err("409", "Conflicts with other resources")
        .err("422", "Invalid: `field` names the offending field"),
        Op::new(
            HttpMethod::Delete,
            &one,
            plural,
            &format!("delete_{kind}"),
            &format!("Delete a {kind}"),
        )
        .ok("204", "Deleted", None)
        .err("404", "No such resource")
        .err("409", "Still in use"),
    ]
}

fn other_ops() -> Vec<Op> {
    let int = u64::schema;
    vec![
        Op::new(
            HttpMethod::Post,
            "/v1/services/{id}/verify",
            "services",
            "verify_service_hostnames",
            "Prove control of the service's pending hostnames (TXT `_lingjing-challenge.<name>`), or approve them (operator)",
        )
        .body("application/json", schema_ref("VerifyRequest"))
        .ok("200", "Each hostname's state; `detail` says why one is still pending", Some(schema_ref("VerifyResult")))
        .err("403", "`approve` needs the operator token")
        .err("404", "No such service (or not yours)"),
        Op::new(
            HttpMethod::Get,
            "/v1/pools/{id}/allocations",
            "pools",
            "list_allocations",
            "List a pool's allocations",
        )
        .ok("200", "Allocations", Some(array_of("Allocation"))),
        Op::new(
            HttpMethod::Post,
            "/v1/pools/{id}/allocations",
            "pools",
            "allocate_address",
            "Allocate an address to a node",
        )
        .body("application/json", schema_ref("AllocateRequest"))
        .ok("201", "Allocated", Some(schema_ref("Allocation")))
        .err(
            "409",
            "The pool is exhausted (`pool_exhausted`) or the address is taken",
        )
        .err("422", "Invalid node or address"),
        Op::new(
            HttpMethod::Delete,
            "/v1/pools/{id}/allocations/{address}",
            "pools",
            "release_address",
            "Release an allocated address",
        )
        .ok("204", "Released", None)
        .err("404", "Not allocated"),
        Op::new(
            HttpMethod::Get,
            "/v1/lines/{id}/prefixes",
            "lines",
            "list_line_prefixes",
            "List a line's prefixes",
        )
        .ok("200", "Prefixes", Some(array_of("LinePrefix"))),
        Op::new(
            HttpMethod::Put,
            "/v1/lines/{id}/prefixes",
            "lines",
            "replace_line_prefixes",
            "Replace a line's prefixes",
        )
        .body("application/json", array_of("LinePrefix"))
        .ok("200", "Stored", Some(schema_ref("ImportSummary")))
        .err("422", "Invalid prefix or unknown region"),
        Op::new(
            HttpMethod::Post,
            "/v1/lines/import",
            "lines",
            "import_line_table",
            "Import a `CIDR line [region]` table",
        )
        .query(
            "create_lines",
            "Create lines named in the file that do not exist (default true)",
            bool::schema(),
        )
        .body("text/plain", String::schema())
        .ok(
            "200",
            "Imported; each line named in the file now holds exactly its prefixes from it",
            Some(schema_ref("ImportSummary")),
        )
        .err("422", "Invalid entry: `field` names its line number"),
        Op::new(
            HttpMethod::Get,
            "/v1/tenants/{id}/keys",
            "tenants",
            "list_api_keys",
            "List a tenant's API keys",
        )
        .ok(
            "200",
            "Keys (without secrets)",
            Some(array_of("ApiKeyInfo")),
        ),
        Op::new(
            HttpMethod::Get,
            "/v1/whoami",
            "tenants",
            "whoami",
            "Whom the credential speaks for: the operator, or a tenant (and which)",
        )
        .ok("200", "The caller", Some(schema_ref("WhoAmI")))
        .err("401", "No or an unknown credential"),
        Op::new(
            HttpMethod::Post,
            "/v1/tenants/{id}/keys",
            "tenants",
            "create_api_key",
            "Create a tenant API key",
        )
        .ok(
            "201",
            "Created; the secret is shown only now",
            Some(schema_ref("NewApiKey")),
        ),
        Op::new(
            HttpMethod::Delete,
            "/v1/tenants/{id}/keys/{key}",
            "tenants",
            "revoke_api_key",
            "Revoke a tenant API key",
        )
        .ok("204", "Revoked", None),
        Op::new(
            HttpMethod::Get,
            "/v1/tenants/{id}/s3-keys",
            "storage",
            "list_s3_keys",
            "List a tenant's S3 access keys (operator or the tenant itself)",
        )
        .ok("200", "Keys (without secrets)", Some(array_of("S3KeyInfo"))),
        Op::new(
            HttpMethod::Post,
            "/v1/tenants/{id}/s3-keys",
            "storage",
            "create_s3_key",
            "Create an S3 access key for a tenant (operator or the tenant itself)",
        )
        .ok(
            "201",
            "Created; the secret is shown only now",
            Some(schema_ref("NewS3Key")),
        )
        .err("409", "The tenant has the most S3 keys allowed"),
        Op::new(
            HttpMethod::Post,
            "/v1/tenants/{id}/s3-keys/console",
            "storage",
            "console_s3_key",
            "The tenant's web-console S3 key (`LJW...`, made on first use, revocable like any key) and the S3 gateways that are up (operator or the tenant itself)",
        )
        .ok(
            "200",
            "The key with its secret, and the gateways",
            Some(schema_ref("ConsoleS3Access")),
        ),
        Op::new(
            HttpMethod::Delete,
            "/v1/tenants/{id}/s3-keys/{key}",
            "storage",
            "revoke_s3_key",
            "Revoke an S3 access key (the gateways refuse it from their next snapshot)",
        )
        .ok("204", "Revoked", None),
        Op::new(
            HttpMethod::Get,
            "/v1/storage/status",
            "storage",
            "storage_status",
            "Storage nodes: health and their last disk report",
        )
        .ok("200", "Storage nodes", Some(array_of("StorageNodeStatus"))),
        Op::new(
            HttpMethod::Get,
            "/v1/models",
            "models",
            "list_models",
            "Edge AI models: how many versions, the latest (operator or a node)",
        )
        .ok("200", "Models", Some(array_of("ModelSummary"))),
        Op::new(
            HttpMethod::Get,
            "/v1/models/{model}/versions",
            "models",
            "list_model_versions",
            "A model's versions, newest first (operator or a node)",
        )
        .ok("200", "Versions", Some(array_of("ModelVersionRecord"))),
        Op::new(
            HttpMethod::Post,
            "/v1/models/{model}/versions",
            "models",
            "register_model_version",
            "Register a model version (operator): its artefact and self-test input must be kept already; a version never changes",
        )
        .body("application/json", schema_ref("ModelVersion"))
        .ok("201", "Registered", Some(schema_ref("ModelVersionRecord")))
        .err("409", "The model has this version already")
        .err("422", "Invalid, or an artefact it names is not kept"),
        Op::new(
            HttpMethod::Get,
            "/v1/models/{model}/versions/{version}",
            "models",
            "get_model_version",
            "One model version (operator or a node)",
        )
        .ok("200", "The version", Some(schema_ref("ModelVersionRecord"))),
        Op::new(
            HttpMethod::Post,
            "/v1/rollouts",
            "rollouts",
            "create_rollout",
            "Roll a model version out to the edge AI nodes (operator): groups fixed now (a canary, then cumulative shares, sites interleaved), each started once enough of the one before committed; a running or paused rollout of the model is superseded",
        )
        .body("application/json", schema_ref("NewRollout"))
        .ok("201", "Made; the driver gives the first group the version within a second", Some(schema_ref("RolloutStatus")))
        .err("422", "Invalid: the version is not registered, a site or region does not exist, no node is chosen, ..."),
        Op::new(
            HttpMethod::Get,
            "/v1/rollouts",
            "rollouts",
            "list_rollouts",
            "The newest 100 rollouts, newest first, with each group's counts (operator)",
        )
        .ok("200", "Rollouts", Some(array_of("RolloutStatus"))),
        Op::new(
            HttpMethod::Get,
            "/v1/rollouts/{id}",
            "rollouts",
            "get_rollout",
            "A rollout: plan, progress, each group's counts and each node as it reported (operator)",
        )
        .ok("200", "The rollout", Some(schema_ref("RolloutStatus")))
        .err("404", "No such rollout"),
        Op::new(
            HttpMethod::Post,
            "/v1/rollouts/{id}/pause",
            "rollouts",
            "pause_rollout",
            "Pause a running rollout where it is (operator)",
        )
        .ok("200", "Paused", Some(schema_ref("RolloutStatus")))
        .err("404", "No such rollout")
        .err("409", "It is not running"),
        Op::new(
            HttpMethod::Post,
            "/v1/rollouts/{id}/resume",
            "rollouts",
            "resume_rollout",
            "Resume a paused rollout (operator)",
        )
        .ok("200", "Running again", Some(schema_ref("RolloutStatus")))
        .err("404", "No such rollout")
        .err("409", "It is not paused"),
        Op::new(
            HttpMethod::Post,
            "/v1/rollouts/{id}/abort",
            "rollouts",
            "abort_rollout",
            "Abort a running or paused rollout: every node it touched goes back to its previous version (operator)",
        )
        .ok("200", "Aborted", Some(schema_ref("RolloutStatus")))
        .err("404", "No such rollout")
        .err("409", "It is neither running nor paused"),
        Op::new(
            HttpMethod::Get,
            "/v1/artifacts",
            "artifacts",
            "list_artifacts",
            "Every artefact kept (operator), newest first",
        )
        .ok("200", "Artefacts", Some(array_of("ArtifactInfo"))),
        Op::new(
            HttpMethod::Put,
            "/v1/artifacts/sha256/{digest}",
            "artifacts",
            "put_artifact",
            "Keep a content-addressed artefact (operator): the body is streamed, its SHA-256 must be `digest` and its size at most 1 GiB; one already kept is never overwritten",
        )
        .body("application/octet-stream", String::schema())
        .ok("201", "Kept", Some(schema_ref("ArtifactInfo")))
        .ok("200", "Already kept (the body was not read)", Some(schema_ref("ArtifactInfo")))
        .err("413", "Over 1 GiB")
        .err("422", "The body's SHA-256 is not `digest`; nothing was kept"),
        Op::new(
            HttpMethod::Get,
            "/v1/artifacts/sha256/{digest}",
            "artifacts",
            "get_artifact",
            "An artefact's bytes (operator or a node), immutable: `Cache-Control: public, max-age=31536000, immutable`, `ETag: \"sha256:DIGEST\"`",
        )
        .ok("200", "The bytes", Some(String::schema())),
        Op::new(
            HttpMethod::Post,
            "/v1/storage/scrub",
            "storage",
            "storage_scrub",
            "Ask every storage node to start a scrub pass now (every block re-read and checked)",
        )
        .ok("200", "What each node answered", Some(array_of("ScrubAsked"))),
        Op::new(
            HttpMethod::Get,
            "/v1/storage/usage",
            "storage",
            "storage_usage",
            "Per bucket: requests, bytes in and out, and what it holds (last sample, mean), as the S3 gateways reported them (the operator's, or a tenant's own)",
        )
        .query("from", "Start (RFC 3339); default one hour before `to`", String::schema())
        .query("to", "End (RFC 3339, exclusive); default now", String::schema())
        .query("tenant", "Only this tenant's buckets", String::schema())
        .ok("200", "Usage per bucket", Some(array_of("BucketUsage")))
        .err("403", "A tenant asked for another tenant's buckets"),
        Op::new(
            HttpMethod::Get,
            "/v1/storage/layout",
            "storage",
            "storage_layout",
            "The storage layout in effect (version 0: every storage node, equal shares)",
        )
        .ok("200", "The layout", Some(schema_ref("StorageLayout"))),
        Op::new(
            HttpMethod::Post,
            "/v1/storage/layout",
            "storage",
            "apply_storage_layout",
            "Apply a new storage layout (version = current + 1; `?dry_run=true` only checks it) and estimate the share of block pieces placed elsewhere",
        )
        .query("dry_run", "Only check the layout and estimate what moves", bool::schema())
        .body("application/json", schema_ref("StorageLayout"))
        .ok("200", "Applied (or checked)", Some(schema_ref("LayoutChange")))
        .err("409", "`version_mismatch`: another layout was applied meanwhile")
        .err("422", "Invalid: `field` names the offending node"),
        Op::new(
            HttpMethod::Get,
            "/v1/snapshots/{role}",
            "agents",
            "poll_snapshot",
            "Long-poll the snapshot of a data-plane role (`edge`, `dns`, `storage` or `s3`)",
        )
        .query("node", "The polling node's id", String::schema())
        .query(
            "after",
            "The version the poller has; the answer waits for a newer one",
            int(),
        )
        .query(
            "timeout_ms",
            "How long to wait (default 30000, at most 120000)",
            int(),
        )
        .ok(
            "200",
            "A newer snapshot (header `x-lingjing-version` holds its version)",
            Some(RefOr::T(Schema::OneOf(
                utoipa::openapi::schema::OneOfBuilder::new()
                    .item(schema_ref("EdgeSnapshotResponse"))
                    .item(schema_ref("DnsSnapshotResponse"))
                    .item(schema_ref("StorageSnapshotResponse"))
                    .build(),
            ))),
        )
        .ok("304", "Nothing newer within the timeout", None)
        .err("404", "Unknown role or node"),
        Op::new(
            HttpMethod::Post,
            "/v1/nodes/{id}/heartbeat",
            "agents",
            "heartbeat",
            "Register a node's agent or report it alive, with the snapshot version applied",
        )
        .body("application/json", schema_ref("Heartbeat"))
        .ok("204", "Recorded", None)
        .err("404", "Unknown node"),
        Op::new(
            HttpMethod::Post,
            "/v1/nodes/{id}/join-token",
            "nodes",
            "issue_join_token",
            "Issue a one-time join token for a node (operator only; shown once)",
        )
        .query("ttl_s", "Seconds it stays valid (default 3600, at most 604800)", int())
        .ok("201", "Issued", Some(schema_ref("JoinToken")))
        .err("404", "Unknown node")
        .err("422", "Invalid ttl_s"),
        Op::new(
            HttpMethod::Post,
            "/v1/nodes/{id}/credential",
            "nodes",
            "exchange_join_token",
            "Exchange a join token for the node's credential (no Authorization needed; the token works once)",
        )
        .body("application/json", schema_ref("CredentialRequest"))
        .ok("201", "The node's credential (shown once)", Some(schema_ref("NodeCredential"))),
        Op::new(
            HttpMethod::Post,
            "/v1/nodes/{id}/revoke",
            "nodes",
            "revoke_node_credential",
            "Revoke a node's credential and its unused join tokens at once (operator only)",
        )
        .ok("200", "Revoked", Some(schema_ref("Revoked")))
        .err("404", "Unknown node"),
        Op::new(
            HttpMethod::Get,
            "/v1/nodes/{id}/health",
            "nodes",
            "node_health_history",
            "A node's health changes as the prober decided them, latest first (operator only)",
        )
        .query("limit", "How many (default 100, at most 1000)", u32::schema())
        .ok("200", "Changes", Some(array_of("HealthChange")))
        .err("404", "Unknown node")
        .err("422", "A limit out of range"),
        Op::new(
            HttpMethod::Post,
            "/v1/purges",
            "purges",
            "create_purge",
            "Purge cached content by URL, prefix or tag (hard or soft)",
        )
        .body("application/json", schema_ref("PurgeRequest"))
        .ok(
            "201",
            "Issued; `pending` lists the nodes yet to apply it",
            Some(schema_ref("PurgeStatus")),
        )
        .err("404", "No such service")
        .err("422", "Invalid purge"),
        Op::new(
            HttpMethod::Get,
            "/v1/purges",
            "purges",
            "list_purges",
            "List the newest purges",
        )
        .ok("200", "Purges, newest first", Some(array_of("Purge"))),
        Op::new(
            HttpMethod::Get,
            "/v1/purges/{id}",
            "purges",
            "get_purge",
            "Show a purge and which nodes have applied it",
        )
        .ok("200", "The purge", Some(schema_ref("PurgeStatus")))
        .err("404", "No such purge"),
        Op::new(
            HttpMethod::Post,
            "/v1/defence/rules",
            "defence",
            "add_defence_rule",
            "Add a traffic defence rule: allow, block or limit requests by source, method, path, header or user agent, in monitor or enforce mode, with an optional time to live (a tenant: for its own services; every service: operator only)",
        )
        .body("application/json", schema_ref("RuleSpec"))
        .ok("201", "Added; on every edge with the next snapshot", Some(schema_ref("DefenceRule")))
        .err("404", "No such service")
        .err("422", "Invalid rule, or too many rules"),
        Op::new(
            HttpMethod::Get,
            "/v1/plans",
            "billing",
            "list_plans",
            "Price plans (a tenant: the plan it is on)",
        )
        .ok("200", "Plans", Some(array_of("Plan"))),
        Op::new(
            HttpMethod::Post,
            "/v1/plans",
            "billing",
            "create_plan",
            "Create a price plan: CDN by 95th percentile or transfer with commit and overage, storage per GB-month, requests and egress, colocation per cabinet, kW and committed bandwidth, tax, SLA credits (operator)",
        )
        .body("application/json", schema_ref("Plan"))
        .ok("201", "Created", Some(schema_ref("Plan")))
        .err("409", "A plan with that id exists")
        .err("422", "Invalid plan (the field is named)"),
        Op::new(
            HttpMethod::Get,
            "/v1/plans/{id}",
            "billing",
            "get_plan",
            "Show a plan",
        )
        .ok("200", "The plan", Some(schema_ref("Plan")))
        .err("404", "No such plan"),
        Op::new(
            HttpMethod::Put,
            "/v1/plans/{id}",
            "billing",
            "replace_plan",
            "Replace a plan (invoices made keep their prices; later runs use the new ones)",
        )
        .body("application/json", schema_ref("Plan"))
        .ok("200", "Replaced", Some(schema_ref("Plan")))
        .err("404", "No such plan")
        .err("422", "Invalid plan"),
        Op::new(
            HttpMethod::Delete,
            "/v1/plans/{id}",
            "billing",
            "delete_plan",
            "Delete a plan no tenant is on",
        )
        .ok("204", "Deleted", None)
        .err("404", "No such plan")
        .err("409", "Tenants are on it"),
        Op::new(
            HttpMethod::Get,
            "/v1/tenants/{id}/plan",
            "billing",
            "get_tenant_plan",
            "The plan a tenant is on",
        )
        .ok("200", "The plan's id, or null", Some(schema_ref("TenantPlan")))
        .err("404", "No such tenant"),
        Op::new(
            HttpMethod::Put,
            "/v1/tenants/{id}/plan",
            "billing",
            "set_tenant_plan",
            "Put a tenant on a plan (null: none, not billed) (operator)",
        )
        .body("application/json", schema_ref("TenantPlan"))
        .ok("200", "Set", Some(schema_ref("TenantPlan")))
        .err("404", "No such tenant")
        .err("422", "No such plan"),
        Op::new(
            HttpMethod::Post,
            "/v1/billing/runs",
            "billing",
            "run_billing",
            "Bill a month for every tenant on a plan: an ended month gets final invoices, made once (a rerun changes nothing); the current month gets drafts (operator)",
        )
        .body("application/json", schema_ref("RunRequest"))
        .ok("200", "What each tenant got", Some(schema_ref("RunResult")))
        .err("400", "The month has not begun")
        .err("422", "Not a month (YYYY-MM)"),
        Op::new(
            HttpMethod::Get,
            "/v1/invoices",
            "billing",
            "list_invoices",
            "Invoices, drafts and credit notes (a tenant: its own)",
        )
        .query("tenant", "Only this tenant's", String::schema())
        .query("month", "Only this month (YYYY-MM)", String::schema())
        .ok("200", "Invoices, by month then number", Some(array_of("InvoiceRecord"))),
        Op::new(
            HttpMethod::Get,
            "/v1/invoices/{number}",
            "billing",
            "get_invoice",
            "One invoice: each line's quantity, unit, unit price, amount and how the quantity was computed",
        )
        .query("format", "json (default), csv or html (a printable page)", String::schema())
        .ok("200", "The invoice", Some(schema_ref("InvoiceRecord")))
        .err("404", "No such invoice"),
        Op::new(
            HttpMethod::Post,
            "/v1/invoices/{number}/credit-notes",
            "billing",
            "credit_invoice",
            "Correct a final invoice with a credit note (operator)",
        )
        .body("application/json", schema_ref("CreditRequest"))
        .ok("201", "The credit note", Some(schema_ref("InvoiceRecord")))
        .err("404", "No such invoice")
        .err("409", "Not a final invoice")
        .err("422", "An amount above what is left, or no reason"),
        Op::new(
            HttpMethod::Post,
            "/v1/cabinets/{id}/cross-connects/{xc}/samples",
            "billing",
            "put_cross_connect_samples",
            "A collector's 5-minute traffic samples of a cross-connect (a sample sent again replaces the one kept); its tenant is billed the committed bandwidth and the 95th percentile above it (operator)",
        )
        .body("application/json", schema_ref("ColoSamples"))
        .ok("204", "Kept", None)
        .err("404", "No such cabinet or cross-connect")
        .err("422", "A sample off a 5-minute boundary, or too many"),
        Op::new(
            HttpMethod::Get,
            "/v1/costs",
            "billing",
            "list_costs",
            "The operator's costs per site (operator)",
        )
        .ok("200", "Costs, by site", Some(array_of("SiteCost"))),
        Op::new(
            HttpMethod::Put,
            "/v1/costs/{id}",
            "billing",
            "put_cost",
            "Create or replace a cost of a site: flat monthly, or a bandwidth contract priced by the site's 95th percentile; for a segment or shared (operator)",
        )
        .body("application/json", schema_ref("SiteCost"))
        .ok("200", "Kept", Some(schema_ref("SiteCost")))
        .err("422", "Invalid cost, or no such site"),
        Op::new(
            HttpMethod::Delete,
            "/v1/costs/{id}",
            "billing",
            "delete_cost",
            "Delete a cost",
        )
        .ok("204", "Deleted", None)
        .err("404", "No such cost"),
        Op::new(
            HttpMethod::Get,
            "/v1/incidents",
            "billing",
            "list_incidents",
            "Recorded outages of sites' uplinks overlapping a window (operator)",
        )
        .query("from", "Start, RFC 3339 (default: 31 days before `to`)", String::schema())
        .query("to", "End, RFC 3339 (default: now)", String::schema())
        .ok("200", "Incidents, by start", Some(array_of("Incident"))),
        Op::new(
            HttpMethod::Post,
            "/v1/incidents",
            "billing",
            "add_incident",
            "Record an outage of a site's uplinks: colocation tenants there lose uptime for it (SLA credits) (operator)",
        )
        .body("application/json", schema_ref("Incident"))
        .ok("201", "Recorded", Some(schema_ref("Incident")))
        .err("409", "An incident with that id exists")
        .err("422", "Invalid incident, or no such site"),
        Op::new(
            HttpMethod::Delete,
            "/v1/incidents/{id}",
            "billing",
            "delete_incident",
            "Delete an incident record",
        )
        .ok("204", "Deleted", None)
        .err("404", "No such incident"),
        Op::new(
            HttpMethod::Get,
            "/v1/reports/segments",
            "billing",
            "segment_report",
            "Revenue, cost and gross margin per segment (IDC colocation, edge) and per site for a month, from its invoices and the sites' costs (operator)",
        )
        .query("month", "YYYY-MM (default: the current month)", String::schema())
        .ok("200", "The report", Some(schema_ref("SegmentReport")))
        .err("409", "The month's invoices are in more than one currency"),
        Op::new(
            HttpMethod::Get,
            "/v1/defence/rules",
            "defence",
            "list_defence_rules",
            "List the rules in force (manual and detected)",
        )
        .ok("200", "Rules, oldest first", Some(array_of("DefenceRule"))),
        Op::new(
            HttpMethod::Get,
            "/v1/defence/rules/{id}",
            "defence",
            "get_defence_rule",
            "Show a rule",
        )
        .ok("200", "The rule", Some(schema_ref("DefenceRule")))
        .err("404", "No such rule"),
        Op::new(
            HttpMethod::Delete,
            "/v1/defence/rules/{id}",
            "defence",
            "remove_defence_rule",
            "Remove a rule (also a detected one, to lift a block early)",
        )
        .ok("204", "Removed", None)
        .err("404", "No such rule"),
        Op::new(
            HttpMethod::Get,
            "/v1/defence/events",
            "defence",
            "list_defence_events",
            "Attacks the edge nodes detected: start, end, service, peak rate, top sources, the rule applied, requests refused",
        )
        .query("service", "Only this service's events", String::schema())
        .query("limit", "At most this many, newest first (default 100, at most 1000)", int())
        .ok("200", "Events, newest first", Some(array_of("DefenceEvent"))),
        Op::new(
            HttpMethod::Get,
            "/v1/defence/learned",
            "defence",
            "list_learned_thresholds",
            "Thresholds learned per service from the edges' per-minute busiest seconds (p95 over the learning window times the burst factor)",
        )
        .ok("200", "Learned thresholds", Some(array_of("LearnedThresholds"))),
        Op::new(
            HttpMethod::Post,
            "/v1/defence/learned",
            "defence",
            "learn_thresholds",
            "Run a learning pass now (operator only; one runs every 5 minutes anyway)",
        )
        .ok("200", "Learned thresholds in force", Some(array_of("LearnedThresholds")))
        .err("403", "Not the operator"),
        Op::new(
            HttpMethod::Get,
            "/v1/services/{id}/usage",
            "services",
            "service_usage",
            "Requests and bytes sent per minute, as the edge nodes reported them",
        )
        .query(
            "from",
            "Start, RFC 3339 (default: an hour before `to`)",
            String::schema(),
        )
        .query(
            "to",
            "End, RFC 3339, exclusive (default: now)",
            String::schema(),
        )
        .ok("200", "Usage", Some(schema_ref("ServiceUsage")))
        .err("404", "No such service"),
        Op::new(
            HttpMethod::Get,
            "/v1/usage",
            "usage",
            "metered_usage",
            "Metered traffic (requests and bytes by cache hit, miss or pass; bytes in and out) from the edges' 5-minute samples, grouped and stepped; a tenant reads its own",
        )
        .query(
            "from",
            "Start, RFC 3339 (default: 24 hours before `to`)",
            String::schema(),
        )
        .query(
            "to",
            "End, RFC 3339, exclusive (default: now)",
            String::schema(),
        )
        .query(
            "group",
            "service (default), node, site, line (the line of the node's address the clients reached) or tenant",
            String::schema(),
        )
        .query("step", "5m, 1h (default), 1d or month", String::schema())
        .query("tenant", "Only this tenant's services", String::schema())
        .query("service", "Only this service", String::schema())
        .query("node", "Only this node", String::schema())
        .query("site", "Only this site", String::schema())
        .query("line", "Only this line", String::schema())
        .ok("200", "Usage", Some(schema_ref("UsageReport")))
        .err("400", "A bad range, group or step, or too many points")
        .err("403", "Another tenant's usage"),
        Op::new(
            HttpMethod::Get,
            "/v1/sla",
            "sla",
            "sla_report",
            "Availability of nodes, sites and services over a window against a target",
        )
        .query("target", "Percent, e.g. 99.90 (default)", f64::schema())
        .query(
            "from",
            "Start, RFC 3339 (default: 30 days before `to`)",
            String::schema(),
        )
        .query("to", "End, RFC 3339 (default: now)", String::schema())
        .ok(
            "200",
            "The report; `below_target` lists what missed, worst first",
            Some(schema_ref("SlaReport")),
        ),
    ]
}

fn add_schema<T: ToSchema>(components: ComponentsBuilder) -> ComponentsBuilder {
    let mut nested = Vec::new();
    T::schemas(&mut nested);
    let mut c = components.schema(T::name(), T::schema());
    for (name, schema) in nested {
        c = c.schema(name, schema);
    }
    c
}

fn add_resource<R: Resource>(components: ComponentsBuilder) -> ComponentsBuilder {
    add_schema::<R::View>(add_schema::<R>(components))
}

/// The document's description, with the limits every client meets.
const DESCRIPTION: &str = "Inventory, IPAM, tenants, services and snapshot distribution of the Lingjing edge cloud. \
Authenticate with `Authorization: Bearer <operator token, tenant API key or node credential>`.\n\n\
Limits (each answered with a 4xx naming it): request bodies 1 MiB (413 `too_large`; 64 MiB for the operator's \
line prefix tables); per service at most 100 hostnames, 16 origins, 100 cache rules, 16 key headers per rule, \
64 entries per steering list, 256 KiB of certificate and key (422 `invalid` naming the field); 1000 targets per purge; \
10 API keys per tenant (409 `limit_reached`); per-tenant quotas set by the operator in `Tenant.quotas`: services \
(403 `quota_exceeded`) and purges per minute (429 `rate_limited` with `Retry-After`). New hostnames are `pending` \
until `POST /v1/services/{id}/verify` finds the `_lingjing-challenge` TXT record (see `hostname_status`).";

/// Builds the document.
pub fn document() -> OpenApi {
    let mut paths = Paths::new();
    let ops = [
        crud_ops::<Region>(),
        crud_ops::<Line>(),
        crud_ops::<Site>(),
        crud_ops::<Node>(),
        crud_ops::<IpPool>(),
        crud_ops::<Tenant>(),
        crud_ops::<Service>(),
        crud_ops::<DnsRecord>(),
        crud_ops::<lingjing_model::colocation::Cabinet>(),
        crud_ops::<lingjing_model::inspect::Device>(),
        crud_ops::<lingjing_model::inspect::Crew>(),
        crud_ops::<lingjing_model::monitor::Sensor>(),
        crud_ops::<lingjing_model::monitor::Receiver>(),
        crud_ops::<lingjing_model::monitor::Silence>(),
        other_ops(),
        inspect_ops(),
        monitor_ops(),
    ];
    for op in ops.into_iter().flatten() {
        op.add_to(&mut paths);
    }
    let mut components = ComponentsBuilder::new().security_scheme(
        "token",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    components = add_resource::<Region>(components);
    components = add_resource::<Line>(components);
    components = add_resource::<Site>(components);
    components = add_resource::<Node>(components);
    components = add_resource::<IpPool>(components);
    components = add_resource::<Tenant>(components);
    components = add_resource::<Service>(components);
    components = add_resource::<DnsRecord>(components);
    components = add_resource::<lingjing_model::colocation::Cabinet>(components);
    components = add_schema::<lingjing_model::colocation::Assignment>(components);
    components = add_schema::<lingjing_model::colocation::CrossConnect>(components);
    components = add_schema::<lingjing_model::colocation::CabinetStatus>(components);
    components = add_resource::<lingjing_model::monitor::Sensor>(components);
    components = add_resource::<lingjing_model::monitor::Receiver>(components);
    components = add_resource::<lingjing_model::monitor::Silence>(components);
    components = add_schema::<lingjing_model::monitor::SensorKind>(components);
    components = add_schema::<lingjing_model::monitor::SilenceMatcher>(components);
    components = add_schema::<lingjing_model::monitor::EmailRoute>(components);
    components = add_schema::<lingjing_model::monitor::MonitorBatch>(components);
    components = add_schema::<lingjing_model::monitor::MonitorRecord>(components);
    components = add_schema::<lingjing_model::monitor::MonitorEvent>(components);
    components = add_schema::<lingjing_model::monitor::AlertEvent>(components);
    components = add_schema::<lingjing_model::monitor::AlertState>(components);
    components = add_schema::<lingjing_model::monitor::SensorValue>(components);
    components = add_schema::<lingjing_model::monitor::Telemetry>(components);
    components = add_schema::<crate::store::monitor::Point>(components);
    components = add_schema::<crate::store::monitor::AlertRow>(components);
    components = add_schema::<super::monitor::Series>(components);
    components = add_schema::<super::monitor::AckRequest>(components);
    components = add_resource::<lingjing_model::inspect::Device>(components);
    components = add_resource::<lingjing_model::inspect::Crew>(components);
    components = add_schema::<lingjing_model::inspect::DetectRule>(components);
    components = add_schema::<lingjing_model::inspect::Area>(components);
    components = add_schema::<lingjing_model::inspect::InspectPolicy>(components);
    components = add_schema::<lingjing_model::inspect::FrameBatch>(components);
    components = add_schema::<lingjing_model::inspect::FrameRecord>(components);
    components = add_schema::<lingjing_model::inspect::Detection>(components);
    components = add_schema::<lingjing_model::inspect::FrameAck>(components);
    components = add_schema::<lingjing_model::inspect::RejectedRecord>(components);
    components = add_schema::<super::inspect::DeviceToken>(components);
    components = add_schema::<super::inspect::RunView>(components);
    components = add_schema::<super::inspect::DefectView>(components);
    components = add_schema::<super::inspect::WorkOrderView>(components);
    components = add_schema::<super::inspect::OrderAction>(components);
    components = add_schema::<crate::store::inspect::Run>(components);
    components = add_schema::<crate::store::inspect::Defect>(components);
    components = add_schema::<crate::store::inspect::Evidence>(components);
    components = add_schema::<crate::store::inspect::WorkOrder>(components);
    components = add_schema::<crate::store::inspect::OrderEvent>(components);
    components = add_schema::<lingjing_inspect::report::WeeklyReport>(components);
    components = add_schema::<lingjing_inspect::report::ClassLine>(components);
    components = add_schema::<lingjing_inspect::Action>(components);
    components = add_schema::<Allocation>(components);
    components = add_schema::<AllocateRequest>(components);
    components = add_schema::<LinePrefix>(components);
    components = add_schema::<ImportSummary>(components);
    components = add_schema::<ApiKeyInfo>(components);
    components = add_schema::<NewApiKey>(components);
    components = add_schema::<WhoAmI>(components);
    components = add_schema::<Heartbeat>(components);
    components = add_schema::<super::nodes::JoinToken>(components);
    components = add_schema::<super::nodes::CredentialRequest>(components);
    components = add_schema::<super::nodes::NodeCredential>(components);
    components = add_schema::<super::nodes::Revoked>(components);
    components = add_schema::<super::nodes::HealthChange>(components);
    components = add_schema::<EdgeSnapshotResponse>(components);
    components = add_schema::<DnsSnapshotResponse>(components);
    components = add_schema::<StorageSnapshotResponse>(components);
    components = add_schema::<lingjing_model::tenant::S3KeyInfo>(components);
    components = add_schema::<lingjing_model::tenant::NewS3Key>(components);
    components = add_schema::<lingjing_model::tenant::ConsoleS3Access>(components);
    components = add_schema::<lingjing_model::artifact::ArtifactInfo>(components);
    components = add_schema::<lingjing_model::aiot::ModelVersion>(components);
    components = add_schema::<crate::store::models::ModelVersionRecord>(components);
    components = add_schema::<crate::store::models::ModelSummary>(components);
    components = add_schema::<super::rollouts::NewRollout>(components);
    components = add_schema::<super::rollouts::RolloutStatus>(components);
    components = add_schema::<super::rollouts::RolloutGroup>(components);
    components = add_schema::<super::rollouts::RolloutNode>(components);
    components = add_schema::<super::rollouts::NodeState>(components);
    components = add_schema::<crate::store::rollouts::Rollout>(components);
    components = add_schema::<crate::rollout::RolloutPlan>(components);
    components = add_schema::<crate::rollout::RolloutProgress>(components);
    components = add_schema::<crate::rollout::RolloutState>(components);
    components = add_schema::<lingjing_model::aiot::Probation>(components);
    components = add_schema::<lingjing_model::aiot::SlotReport>(components);
    components = add_schema::<lingjing_model::aiot::SlotStage>(components);
    components = add_schema::<lingjing_model::aiot::ProbationFigures>(components);
    components = add_schema::<lingjing_model::snapshot::StorageNodeStatus>(components);
    components = add_schema::<lingjing_model::snapshot::ScrubAsked>(components);
    components = add_schema::<lingjing_model::storage_layout::StorageLayout>(components);
    components = add_schema::<lingjing_model::storage_layout::LayoutNode>(components);
    components = add_schema::<lingjing_model::storage_layout::LayoutChange>(components);
    components = add_schema::<lingjing_model::storage_layout::NodeShare>(components);
    components = add_schema::<lingjing_model::metering::UsageReport>(components);
    components = add_schema::<lingjing_billing::Plan>(components);
    components = add_schema::<lingjing_billing::CdnRate>(components);
    components = add_schema::<lingjing_billing::StorageRate>(components);
    components = add_schema::<lingjing_billing::ColocationRate>(components);
    components = add_schema::<lingjing_billing::BandwidthCommit>(components);
    components = add_schema::<lingjing_billing::SlaTerms>(components);
    components = add_schema::<lingjing_billing::CreditStep>(components);
    components = add_schema::<lingjing_billing::Direction>(components);
    components = add_schema::<lingjing_billing::Invoice>(components);
    components = add_schema::<lingjing_billing::Line>(components);
    components = add_schema::<lingjing_billing::Category>(components);
    components = add_schema::<lingjing_billing::Uptime>(components);
    components = add_schema::<lingjing_billing::Outage>(components);
    components = add_schema::<lingjing_billing::Month>(components);
    components = add_schema::<crate::store::billing::InvoiceRecord>(components);
    components = add_schema::<crate::store::billing::InvoiceKind>(components);
    components = add_schema::<crate::billing::RunResult>(components);
    components = add_schema::<crate::billing::RunLine>(components);
    components = add_schema::<crate::billing::Outcome>(components);
    components = add_schema::<super::billing::TenantPlan>(components);
    components = add_schema::<super::billing::RunRequest>(components);
    components = add_schema::<super::billing::CreditRequest>(components);
    components = add_schema::<crate::store::colocation::SiteCost>(components);
    components = add_schema::<crate::store::colocation::Incident>(components);
    components = add_schema::<crate::store::colocation::CrossConnectSample>(components);
    components = add_schema::<super::colocation::ColoSamples>(components);
    components = add_schema::<lingjing_billing::CostBasis>(components);
    components = add_schema::<lingjing_billing::Segment>(components);
    components = add_schema::<lingjing_billing::SegmentReport>(components);
    components = add_schema::<lingjing_billing::SegmentLine>(components);
    components = add_schema::<lingjing_billing::SiteLine>(components);
    components = add_schema::<lingjing_billing::CostLine>(components);
    components = add_schema::<lingjing_billing::Totals>(components);
    components = add_schema::<lingjing_model::metering::UsageSeries>(components);
    components = add_schema::<lingjing_model::metering::UsagePoint>(components);
    components = add_schema::<lingjing_model::metering::UsageCounts>(components);
    components = add_schema::<lingjing_model::metering::UsageGroup>(components);
    components = add_schema::<lingjing_model::metering::UsageStep>(components);
    components = add_schema::<lingjing_model::snapshot::MeterReport>(components);
    components = add_schema::<lingjing_model::snapshot::MeterSample>(components);
    components = add_schema::<lingjing_model::snapshot::BucketOrigin>(components);
    components = add_schema::<lingjing_model::snapshot::BucketUsage>(components);
    components = add_schema::<lingjing_model::snapshot::BucketStored>(components);
    components = add_schema::<lingjing_model::snapshot::BucketTraffic>(components);
    components = add_schema::<ErrorBody>(components);
    components = add_schema::<super::hostnames::VerifyRequest>(components);
    components = add_schema::<super::hostnames::VerifyResult>(components);
    components = add_schema::<crate::hostnames::HostnameStatus>(components);
    components = add_schema::<crate::hostnames::HostnameState>(components);
    components = add_schema::<lingjing_model::PurgeRequest>(components);
    components = add_schema::<lingjing_model::Purge>(components);
    components = add_schema::<lingjing_model::defence::RuleSpec>(components);
    components = add_schema::<lingjing_model::defence::DefenceRule>(components);
    components = add_schema::<lingjing_model::defence::DefenceEvent>(components);
    components = add_schema::<lingjing_model::defence::LearnedThresholds>(components);
    components = add_schema::<lingjing_model::snapshot::ServiceUsage>(components);
    components = add_schema::<crate::sla::SlaReport>(components);
    components = add_schema::<super::purges::PurgeStatus>(components);
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Lingjing control plane")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(DESCRIPTION))
                .build(),
        )
        .paths(paths)
        .components(Some(components.build()))
        .security(Some(vec![SecurityRequirement::new(
            "token",
            Vec::<String>::new(),
        )]))
        .build()
}

/// IDC monitoring (issue 18).
fn monitor_ops() -> Vec<Op> {
    let text = String::schema;
    vec![
        Op::new(
            HttpMethod::Post,
            "/v1/monitor/records",
            "monitoring",
            "forward_monitor_records",
            "Readings and alert transitions from a site's node outbox (node credential, role aiot, its own site only): records at or below the stream's last kept one are skipped, a reading kept already and a transition kept already (by its id) count once; a record that cannot be taken is named in `rejected`",
        )
        .body("application/json", schema_ref("MonitorBatch"))
        .ok("200", "Kept through `through`", Some(schema_ref("FrameAck")))
        .err("422", "The batch is invalid (named)"),
        Op::new(
            HttpMethod::Get,
            "/v1/sensors/{id}/readings",
            "monitoring",
            "sensor_readings",
            "A sensor's series: raw readings for a step under 60 s, else per-minute rollups (min, max, mean, last) merged into the step",
        )
        .query("from", "ms since the epoch (default: an hour before `to`)", i64::schema())
        .query("to", "ms since the epoch (default: now)", i64::schema())
        .query("step", "Seconds (default 60; at least 60: whole minutes)", u64::schema())
        .ok("200", "The series", Some(schema_ref("Series")))
        .err("404", "No such sensor"),
        Op::new(
            HttpMethod::Get,
            "/v1/alerts",
            "monitoring",
            "list_alerts",
            "Alerts (one per rule and sensor) with their last transition, newest first",
        )
        .query("state", "pending, firing, resolved, cancelled or all (default: pending and firing)", text())
        .query("site", "Only this site's", text())
        .query("limit", "At most this many (default 500)", u64::schema())
        .ok("200", "Alerts", Some(array_of("AlertRow"))),
        Op::new(
            HttpMethod::Post,
            "/v1/alerts/ack",
            "monitoring",
            "ack_alert",
            "Acknowledge a firing alert (it is not escalated; a later firing is not acknowledged)",
        )
        .body("application/json", schema_ref("AckRequest"))
        .ok("200", "Acknowledged", None)
        .err("409", "The alert is not firing"),
    ]
}

/// Road inspection (issue 17) and Open311.
fn inspect_ops() -> Vec<Op> {
    let text = String::schema;
    let list = |op: Op| {
        op.query(
            "tenant",
            "Only this tenant's (the operator's choice; a tenant reads its own)",
            text(),
        )
        .query(
            "limit",
            "At most this many (1 to 1000, default 100)",
            u64::schema(),
        )
        .query("offset", "Skip this many", u64::schema())
    };
    vec![
        Op::new(
            HttpMethod::Post,
            "/v1/inspect/frames",
            "inspection",
            "forward_frames",
            "Frames from an edge AI node's outbox (node credential, role aiot): records at or below the stream's last kept one are skipped, and a camera's frame kept already (through any node) counts once, so a batch sent again changes nothing; a record that cannot be taken is named in `rejected` and never blocks the stream",
        )
        .body("application/json", schema_ref("FrameBatch"))
        .ok("200", "Kept through `through`", Some(schema_ref("FrameAck")))
        .err("422", "A record is invalid (named)"),
        Op::new(
            HttpMethod::Post,
            "/v1/devices/{id}/token",
            "inspection",
            "issue_device_token",
            "A new credential for a patrol camera (shown once; replaces the earlier one); the nodes learn it with the next snapshot",
        )
        .ok("200", "The credential", Some(schema_ref("DeviceToken")))
        .err("404", "No such device"),
        Op::new(
            HttpMethod::Get,
            "/v1/tenants/{id}/inspect-policy",
            "inspection",
            "get_inspect_policy",
            "A tenant's inspection policy (merge distance, threshold, verification)",
        )
        .ok("200", "The policy", Some(schema_ref("InspectPolicy"))),
        Op::new(
            HttpMethod::Put,
            "/v1/tenants/{id}/inspect-policy",
            "inspection",
            "set_inspect_policy",
            "Set a tenant's inspection policy",
        )
        .body("application/json", schema_ref("InspectPolicy"))
        .ok("200", "Set", Some(schema_ref("InspectPolicy")))
        .err("422", "Invalid (the field is named)"),
        list(Op::new(
            HttpMethod::Get,
            "/v1/inspect/runs",
            "inspection",
            "list_runs",
            "Inspection runs (patrols), newest first",
        ))
        .ok("200", "Runs", Some(array_of("Run"))),
        Op::new(
            HttpMethod::Get,
            "/v1/inspect/runs/{id}",
            "inspection",
            "get_run",
            "A run with the path it covered",
        )
        .query("tenant", "The run's tenant (the operator names it)", text())
        .query("device", "The device whose run it is (when two devices used the name)", text())
        .ok("200", "The run", Some(schema_ref("RunView")))
        .err("404", "No such run"),
        Op::new(
            HttpMethod::Get,
            "/v1/inspect/report",
            "inspection",
            "weekly_report",
            "Defects found, fixed and closed, time to fix by class, overdue orders, over a window (default the last 7 days)",
        )
        .query("tenant", "The tenant (the operator names it)", text())
        .query("from", "Start, RFC 3339", text())
        .query("to", "End, RFC 3339, exclusive (default now)", text())
        .ok("200", "The report", Some(schema_ref("WeeklyReport"))),
        list(Op::new(
            HttpMethod::Get,
            "/v1/defects",
            "inspection",
            "list_defects",
            "Defects, newest first seen first (`X-Total-Count`: how many in all)",
        ))
        .query("state", "open, dismissed, duplicate or repaired", text())
        .query("class", "A class code, e.g. D40", text())
        .ok("200", "Defects", Some(array_of("Defect"))),
        Op::new(
            HttpMethod::Get,
            "/v1/defects/{id}",
            "inspection",
            "get_defect",
            "A defect with its evidence frames and its work order",
        )
        .ok("200", "The defect", Some(schema_ref("DefectView")))
        .err("404", "No such defect"),
        Op::new(
            HttpMethod::Get,
            "/v1/defects/{id}/evidence/{stream}/{seq}",
            "inspection",
            "get_evidence_image",
            "The image of one of a defect's evidence frames (JPEG or PNG)",
        )
        .ok("200", "The image", None)
        .err("404", "No such defect or image"),
        list(Op::new(
            HttpMethod::Get,
            "/v1/work-orders",
            "inspection",
            "list_work_orders",
            "Work orders, oldest opened first (a queue; `X-Total-Count`: how many in all)",
        ))
        .query("state", "open, dispatched, in_progress, fixed, verifying, closed, duplicate, cancelled or reopened", text())
        .query("crew", "Only this crew's", text())
        .ok("200", "Work orders", Some(array_of("WorkOrder"))),
        Op::new(
            HttpMethod::Get,
            "/v1/work-orders/{id}",
            "inspection",
            "get_work_order",
            "A work order with its defect and every transition (who, when)",
        )
        .ok("200", "The work order", Some(schema_ref("WorkOrderView")))
        .err("404", "No such work order"),
        Op::new(
            HttpMethod::Post,
            "/v1/work-orders/{id}/actions",
            "inspection",
            "act_on_work_order",
            "Dispatch, start, fix (with a note and a photo), reopen, cancel or mark a duplicate; verify and close are the system's (a later run over the spot)",
        )
        .body("application/json", schema_ref("OrderAction"))
        .ok("200", "Done", Some(schema_ref("WorkOrderView")))
        .err("404", "No such work order")
        .err("409", "The order's state does not allow it (the allowed actions are named)")
        .err("422", "Invalid (the field is named)"),
        Op::new(
            HttpMethod::Get,
            "/open311/v2/{file}",
            "open311",
            "open311_get",
            "Open311 GeoReport v2: `services.json|xml` (the defect classes) or `requests.json|xml` (work orders; `service_request_id`, `service_code`, `start_date`, `end_date`, `status`); `api_key` names the jurisdiction",
        )
        .ok("200", "As the GeoReport v2 spec says", None),
        Op::new(
            HttpMethod::Post,
            "/open311/v2/{file}",
            "open311",
            "open311_post",
            "Open311 GeoReport v2: `requests.json|xml`, a citizen's report (form fields `service_code`, `lat`, `long`, `description`, ...), which enters the same defect flow as a model's detection",
        )
        .ok("200", "`[{service_request_id, service_notice, account_id}]`", None),
        Op::new(
            HttpMethod::Get,
            "/open311/v2/requests/{file}",
            "open311",
            "open311_get_request",
            "Open311 GeoReport v2: one request, `{id}.json|xml`",
        )
        .ok("200", "As the GeoReport v2 spec says", None),
    ]
}
