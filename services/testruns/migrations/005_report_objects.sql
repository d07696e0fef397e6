-- Where each report file is in the Object Store (bucket artifacts), so that
-- it can be downloaded: "<job id>/<path>" for a test job's, uploads/... for
-- one sent with UploadReport; '' for reports stored before this column.
ALTER TABLE test_reports ADD COLUMN object_key TEXT NOT NULL DEFAULT '';
