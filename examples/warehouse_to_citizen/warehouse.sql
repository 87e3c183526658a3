-- smart_warehouse: the source side of the warehouse_to_citizen example.
--
-- Safe to run on an empty database and safe to run again: every statement is
-- CREATE ... IF NOT EXISTS / CREATE OR REPLACE, nothing is dropped.
--
-- Conventions:
--   * every table has `updated_at timestamptz NOT NULL DEFAULT now()`, an index
--     on (updated_at, <primary key>) for keyset-paged incremental reads, and a
--     BEFORE UPDATE trigger that sets updated_at = now(). now() is the start
--     time of the transaction, so every row changed by one transaction gets the
--     same updated_at (incremental readers must page by (updated_at, pk), not by
--     updated_at alone). Note that a long transaction commits rows whose
--     updated_at is older than rows other transactions committed meanwhile.
--   * no foreign keys: a warehouse does not enforce them, and loaders/CDC must
--     not depend on table order.
--   * personal data (names, national IDs, phones, emails, dates of birth,
--     addresses) is synthetic.

CREATE SCHEMA IF NOT EXISTS eligibility;
CREATE SCHEMA IF NOT EXISTS decision;
CREATE SCHEMA IF NOT EXISTS analytics;

CREATE OR REPLACE FUNCTION public.set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END
$$;

DO $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname = 'decision' AND t.typname = 'application_status'
  ) THEN
    CREATE TYPE decision.application_status AS ENUM
      ('draft', 'submitted', 'under_review', 'approved', 'rejected', 'withdrawn');
  END IF;
END
$$;

-- Scheme catalogue (master data, 40 rows in the generated data set).
CREATE TABLE IF NOT EXISTS eligibility.scheme_master (
  scheme_code       text PRIMARY KEY,
  name              text NOT NULL,
  description       text,
  department        text NOT NULL,
  benefit_amount    numeric(12,2),
  eligibility_rules jsonb NOT NULL DEFAULT '{}'::jsonb,
  is_active         boolean NOT NULL DEFAULT true,
  launched_on       date,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS scheme_master_updated_at_idx
  ON eligibility.scheme_master (updated_at, scheme_code);
CREATE OR REPLACE TRIGGER scheme_master_set_updated_at
  BEFORE UPDATE ON eligibility.scheme_master
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

-- One row per citizen: the 360-degree profile built by the warehouse.
CREATE TABLE IF NOT EXISTS public.profile_360 (
  citizen_id       bigint PRIMARY KEY,
  full_name        text NOT NULL,
  national_id      text CHECK (national_id ~ '^[0-9]{4} [0-9]{4} [0-9]{4}$'),
  phone            text,
  email            text,
  date_of_birth    date,
  gender           text CHECK (gender IN ('female', 'male', 'other')),
  district         text,
  state            text,
  annual_income    numeric(14,2),
  household_size   integer CHECK (household_size > 0),
  confidence_score numeric(5,4) CHECK (confidence_score BETWEEN 0 AND 1),
  tags             text[] NOT NULL DEFAULT '{}',
  updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS profile_360_updated_at_idx
  ON public.profile_360 (updated_at, citizen_id);
CREATE OR REPLACE TRIGGER profile_360_set_updated_at
  BEFORE UPDATE ON public.profile_360
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

-- One row per citizen: the merged ("golden") identity record.
CREATE TABLE IF NOT EXISTS public.golden_records (
  citizen_id       bigint PRIMARY KEY,
  full_name        text NOT NULL,
  national_id      text CHECK (national_id ~ '^[0-9]{4} [0-9]{4} [0-9]{4}$'),
  phone            text,
  email            text,
  address_line     text,
  pincode          text CHECK (pincode ~ '^[1-9][0-9]{5}$'),
  date_of_birth    date,
  source_systems   text[] NOT NULL DEFAULT '{}',
  match_confidence numeric(5,4) CHECK (match_confidence BETWEEN 0 AND 1),
  merged_at        timestamptz,
  updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS golden_records_updated_at_idx
  ON public.golden_records (updated_at, citizen_id);
CREATE OR REPLACE TRIGGER golden_records_set_updated_at
  BEFORE UPDATE ON public.golden_records
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

-- Portal click stream (append-only). Aggregated per citizen per UTC day into
-- smart_citizen.analytics.user_behavior.
CREATE TABLE IF NOT EXISTS analytics.page_views (
  view_id     bigint PRIMARY KEY,
  citizen_id  bigint NOT NULL,
  page        text NOT NULL,
  viewed_at   timestamptz NOT NULL,
  duration_ms integer CHECK (duration_ms >= 0),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS page_views_updated_at_idx
  ON analytics.page_views (updated_at, view_id);
CREATE INDEX IF NOT EXISTS page_views_viewed_at_idx
  ON analytics.page_views (viewed_at);
CREATE OR REPLACE TRIGGER page_views_set_updated_at
  BEFORE UPDATE ON analytics.page_views
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

-- Portal sessions; ended_at is NULL while a session is open.
CREATE TABLE IF NOT EXISTS analytics.sessions (
  session_id uuid PRIMARY KEY,
  citizen_id bigint NOT NULL,
  started_at timestamptz NOT NULL,
  ended_at   timestamptz,
  device     text,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sessions_updated_at_idx
  ON analytics.sessions (updated_at, session_id);
CREATE INDEX IF NOT EXISTS sessions_started_at_idx
  ON analytics.sessions (started_at);
CREATE OR REPLACE TRIGGER sessions_set_updated_at
  BEFORE UPDATE ON analytics.sessions
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

-- Citizen feedback on schemes.
CREATE TABLE IF NOT EXISTS public.feedback (
  feedback_id  bigint PRIMARY KEY,
  citizen_id   bigint NOT NULL,
  scheme_code  text NOT NULL,
  rating       integer NOT NULL CHECK (rating BETWEEN 1 AND 5),
  comment      text,
  submitted_at timestamptz NOT NULL,
  updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS feedback_updated_at_idx
  ON public.feedback (updated_at, feedback_id);
CREATE OR REPLACE TRIGGER feedback_set_updated_at
  BEFORE UPDATE ON public.feedback
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

-- Eligibility scores computed by the ML models (event flow: eligibility hints).
CREATE TABLE IF NOT EXISTS eligibility.eligibility_snapshots (
  snapshot_id       bigint PRIMARY KEY,
  citizen_id        bigint NOT NULL,
  scheme_code       text NOT NULL,
  eligibility_score numeric(5,4) NOT NULL CHECK (eligibility_score BETWEEN 0 AND 1),
  is_eligible       boolean NOT NULL,
  reasons           jsonb NOT NULL DEFAULT '[]'::jsonb,
  computed_at       timestamptz NOT NULL,
  updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS eligibility_snapshots_updated_at_idx
  ON eligibility.eligibility_snapshots (updated_at, snapshot_id);
CREATE OR REPLACE TRIGGER eligibility_snapshots_set_updated_at
  BEFORE UPDATE ON eligibility.eligibility_snapshots
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

-- Scheme applications and their decisions (event flow: application status).
CREATE TABLE IF NOT EXISTS decision.applications (
  application_id  bigint PRIMARY KEY,
  citizen_id      bigint NOT NULL,
  scheme_code     text NOT NULL,
  status          decision.application_status NOT NULL DEFAULT 'draft',
  decision_reason text,
  submitted_at    timestamptz,
  decided_at      timestamptz,
  updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS applications_updated_at_idx
  ON decision.applications (updated_at, application_id);
CREATE OR REPLACE TRIGGER applications_set_updated_at
  BEFORE UPDATE ON decision.applications
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

-- Uploaded documents (event flow: document metadata; sha256 stays here).
CREATE TABLE IF NOT EXISTS public.documents (
  document_id    uuid PRIMARY KEY,
  citizen_id     bigint NOT NULL,
  application_id bigint,
  doc_type       text NOT NULL,
  file_name      text NOT NULL,
  sha256         text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  size_bytes     bigint NOT NULL CHECK (size_bytes >= 0),
  uploaded_at    timestamptz NOT NULL,
  updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS documents_updated_at_idx
  ON public.documents (updated_at, document_id);
CREATE OR REPLACE TRIGGER documents_set_updated_at
  BEFORE UPDATE ON public.documents
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
