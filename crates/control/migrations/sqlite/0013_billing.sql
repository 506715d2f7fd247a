-- Billing: price plans (the plan document as JSON), which plan each tenant is on, and
-- invoices. An invoice of an ended month is final: at most one per tenant and month
-- (the partial unique index), never rewritten; a correction is a credit note that refers
-- to it. A draft (the month still running) is replaced by each run.
-- Keep in step with the other backend's 0013_billing.sql.
CREATE TABLE plans (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);

CREATE TABLE tenant_plans (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    plan_id TEXT NOT NULL REFERENCES plans(id)
);

CREATE TABLE invoices (
    number TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    month TEXT NOT NULL,
    kind TEXT NOT NULL,
    refers_to TEXT,
    currency TEXT NOT NULL,
    total TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    doc TEXT NOT NULL
);
CREATE UNIQUE INDEX invoices_final ON invoices (tenant_id, month) WHERE kind = 'invoice';
CREATE INDEX invoices_month ON invoices (month, tenant_id);
