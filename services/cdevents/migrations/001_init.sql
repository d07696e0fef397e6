-- The release each deploy replaced, so deploy.finished can say
-- service.deployed (first release in an environment) or service.upgraded.
CREATE TABLE cde_deploys (
    deploy_id TEXT PRIMARY KEY,
    previous_release TEXT NOT NULL
);
