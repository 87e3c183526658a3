-- smart_citizen: the target side of the warehouse_to_citizen example.
--
-- Safe to run on an empty database and safe to run again (nothing is dropped).
--
-- Conventions:
--   * column types match the source columns exactly (numeric precision and
--     scale, timestamptz, text[], jsonb), so every source value fits unchanged.
--   * only key columns are NOT NULL: the target never refuses a row the
--     source accepted, and a sink may write partial rows.
--   * synced_at defaults to now() on INSERT, and a BEFORE UPDATE trigger sets
--     it to now() on every UPDATE, so it tells when a sync last wrote the row
--     whatever columns the writer sets (a sink's own "synced_at = now()" gives
--     the same value).
--   * deleted_at is NULL for live rows; a soft delete sets it.
--   * no foreign keys: pipelines run independently and in any order.

CREATE SCHEMA IF NOT EXISTS analytics;

CREATE OR REPLACE FUNCTION public.set_synced_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.synced_at := now();
  RETURN NEW;
END
$$;

-- <- eligibility.scheme_master (daily batch). eligibility_rules, created_at
-- and updated_at are not copied.
CREATE TABLE IF NOT EXISTS public.schemes (
  scheme_code    text PRIMARY KEY,
  name           text,
  description    text,
  department     text,
  benefit_amount numeric(12,2),
  is_active      boolean,
  launched_on    date,
  synced_at      timestamptz NOT NULL DEFAULT now(),
  deleted_at     timestamptz
);
CREATE OR REPLACE TRIGGER schemes_set_synced_at
  BEFORE UPDATE ON public.schemes
  FOR EACH ROW EXECUTE FUNCTION public.set_synced_at();

-- <- public.profile_360: hybrid, written by CDC (events.json, profile-updates)
-- and by the daily full and hourly incremental jobs. Renames: full_name ->
-- display_name, updated_at -> source_updated_at. Every writer's sink sets
-- version.column to source_updated_at, so a row is only overwritten by a
-- newer version of it; _source_lsn holds the commit LSN of CDC writes.
CREATE TABLE IF NOT EXISTS public.profile_summary (
  citizen_id        bigint PRIMARY KEY,
  display_name      text,
  national_id       text,
  phone             text,
  email             text,
  date_of_birth     date,
  gender            text,
  district          text,
  state             text,
  annual_income     numeric(14,2),
  household_size    integer,
  confidence_score  numeric(5,4),
  tags              text[],
  source_updated_at timestamptz,
  synced_at         timestamptz NOT NULL DEFAULT now(),
  deleted_at        timestamptz,
  _source_lsn       pg_lsn
);
CREATE OR REPLACE TRIGGER profile_summary_set_synced_at
  BEFORE UPDATE ON public.profile_summary
  FOR EACH ROW EXECUTE FUNCTION public.set_synced_at();

-- <- public.golden_records (daily full sync; CDC later).
-- Renames: full_name -> legal_name, pincode -> postal_code,
-- updated_at -> source_updated_at.
CREATE TABLE IF NOT EXISTS public.profile_data (
  citizen_id        bigint PRIMARY KEY,
  legal_name        text,
  national_id       text,
  phone             text,
  email             text,
  address_line      text,
  postal_code       text,
  date_of_birth     date,
  source_systems    text[],
  match_confidence  numeric(5,4),
  merged_at         timestamptz,
  source_updated_at timestamptz,
  synced_at         timestamptz NOT NULL DEFAULT now(),
  deleted_at        timestamptz
);
CREATE OR REPLACE TRIGGER profile_data_set_synced_at
  BEFORE UPDATE ON public.profile_data
  FOR EACH ROW EXECUTE FUNCTION public.set_synced_at();

-- <- analytics.page_views + analytics.sessions, aggregated per citizen per
-- UTC day (daily batch). An aggregate, so no soft delete.
CREATE TABLE IF NOT EXISTS analytics.user_behavior (
  citizen_id        bigint NOT NULL,
  activity_date     date NOT NULL,
  page_views        integer NOT NULL DEFAULT 0,
  total_duration_ms bigint NOT NULL DEFAULT 0,
  sessions          integer NOT NULL DEFAULT 0,
  synced_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (citizen_id, activity_date)
);
CREATE OR REPLACE TRIGGER user_behavior_set_synced_at
  BEFORE UPDATE ON analytics.user_behavior
  FOR EACH ROW EXECUTE FUNCTION public.set_synced_at();

-- <- public.feedback (daily batch). updated_at is not copied.
CREATE TABLE IF NOT EXISTS public.feedback_analytics (
  feedback_id  bigint PRIMARY KEY,
  citizen_id   bigint,
  scheme_code  text,
  rating       integer,
  comment      text,
  submitted_at timestamptz,
  synced_at    timestamptz NOT NULL DEFAULT now(),
  deleted_at   timestamptz
);
CREATE INDEX IF NOT EXISTS feedback_analytics_scheme_code_idx
  ON public.feedback_analytics (scheme_code);
CREATE OR REPLACE TRIGGER feedback_analytics_set_synced_at
  BEFORE UPDATE ON public.feedback_analytics
  FOR EACH ROW EXECUTE FUNCTION public.set_synced_at();

-- <- eligibility.eligibility_snapshots (event flow). updated_at is not copied.
CREATE TABLE IF NOT EXISTS public.eligibility_hints (
  snapshot_id       bigint PRIMARY KEY,
  citizen_id        bigint,
  scheme_code       text,
  eligibility_score numeric(5,4),
  is_eligible       boolean,
  reasons           jsonb,
  computed_at       timestamptz,
  synced_at         timestamptz NOT NULL DEFAULT now(),
  deleted_at        timestamptz
);
CREATE INDEX IF NOT EXISTS eligibility_hints_citizen_id_idx
  ON public.eligibility_hints (citizen_id);
CREATE OR REPLACE TRIGGER eligibility_hints_set_synced_at
  BEFORE UPDATE ON public.eligibility_hints
  FOR EACH ROW EXECUTE FUNCTION public.set_synced_at();

-- <- decision.applications (event flow). The enum status becomes text.
-- updated_at is not copied.
CREATE TABLE IF NOT EXISTS public.application_status (
  application_id  bigint PRIMARY KEY,
  citizen_id      bigint,
  scheme_code     text,
  status          text,
  decision_reason text,
  submitted_at    timestamptz,
  decided_at      timestamptz,
  synced_at       timestamptz NOT NULL DEFAULT now(),
  deleted_at      timestamptz
);
CREATE INDEX IF NOT EXISTS application_status_citizen_id_idx
  ON public.application_status (citizen_id);
CREATE OR REPLACE TRIGGER application_status_set_synced_at
  BEFORE UPDATE ON public.application_status
  FOR EACH ROW EXECUTE FUNCTION public.set_synced_at();

-- <- public.documents (event flow). sha256 and updated_at are not copied.
CREATE TABLE IF NOT EXISTS public.document_metadata (
  document_id    uuid PRIMARY KEY,
  citizen_id     bigint,
  application_id bigint,
  doc_type       text,
  file_name      text,
  size_bytes     bigint,
  uploaded_at    timestamptz,
  synced_at      timestamptz NOT NULL DEFAULT now(),
  deleted_at     timestamptz
);
CREATE INDEX IF NOT EXISTS document_metadata_citizen_id_idx
  ON public.document_metadata (citizen_id);
CREATE OR REPLACE TRIGGER document_metadata_set_synced_at
  BEFORE UPDATE ON public.document_metadata
  FOR EACH ROW EXECUTE FUNCTION public.set_synced_at();
