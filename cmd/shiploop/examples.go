package main

// examples are the --help examples of each command: what a newcomer types.
var examples = map[string]string{
	"up": `  shiploop up                                   # everything on embedded NATS and SQLite in ./.shiploop
  shiploop up --nats-listen 127.0.0.1:4222      # also let 'nats sub "shiploop.>"' watch the bus
  shiploop up --token s3cret --json             # require a token; print one JSON ready line`,
	"serve": `  shiploop serve --nats-url nats://n1:4222 --database-url postgres://u@db/shiploop builds testruns gates
  shiploop serve --nats-url nats://n1:4222 --replicas 3 deploys errortrack metrics dashboards
  shiploop serve --dry-run --nats-url nats://n1:4222 builds    # check a command line, start nothing`,
	"agent": `  shiploop agent --nats-url nats://n1:4222 --concurrency 4
  SHIPLOOP_NATS_URL=nats://n1:4222 shiploop agent --lease 1m`,
	"repo": `  shiploop repo add acme/web --clone-url https://git.example/acme/web.git
  SHIPLOOP_FORGE_TOKEN=ghp_... shiploop repo add acme/web --clone-url https://github.com/acme/web.git --forge github
  shiploop repo add acme/hg --clone-url https://hg.example/acme --vcs hg --public-only
  shiploop repo list --json`,
	"builds": `  shiploop builds --repo acme/web --limit 5
  shiploop builds get acme/web#12
  shiploop builds get 01a2...c3 --json`,
	"build": `  shiploop build trigger acme/web            # the default branch
  shiploop build trigger acme/web v1.4.0     # a tag: version 1.4.0
  shiploop build cancel 01a2...c3
  shiploop build retry 01a2...c3`,
	"logs": `  shiploop logs acme/web#12                  # every job of the build
  shiploop logs -f 01a2...c3                 # follow a running job`,
	"secret": `  printf %s "$TOKEN" | shiploop secret set acme/web DEPLOY_TOKEN
  shiploop secret ls acme/web
  shiploop secret rm acme/web DEPLOY_TOKEN`,
	"lint": `  shiploop lint                              # ./.shiploop.yml
  shiploop lint --json ci/*.yml`,
	"demo": `  shiploop demo                              # against a 'shiploop up' on the default ports
  shiploop demo --http http://127.0.0.1:18080 --server 127.0.0.1:19090`,
	"tests": `  shiploop tests show --build <build id>
  shiploop tests cases <run id> --status failed,error
  shiploop tests flaky --repo acme/web
  shiploop tests history --repo acme/web --class LoginTest test_wrong_password
  shiploop tests upload --build <build id> report.xml coverage.out`,
	"deploy": `  shiploop deploy status acme/web
  shiploop deploy promote acme/web production --release 1.4.0
  shiploop deploy approve <deploy id> --comment "looks good"
  shiploop deploy rollback acme/web production --reason "error rate up"
  shiploop deploy lock acme/web production --reason "database migration"
  shiploop deploy freeze acme/web production --until 2h --reason "release freeze"
  shiploop deploy logs -f <deploy id>`,
	"monitor": `  shiploop monitor ls acme/web production
  shiploop monitor silence acme/web production web-up --for 2h --reason "planned maintenance"
  shiploop monitor unsilence 3`,
	"schedules": `  shiploop schedules ls acme/web              # each schedule, its cron, time zone, branch and next run
  shiploop schedules pause acme/web nightly
  shiploop schedules resume acme/web nightly
  shiploop schedules ls --json`,
	"runbook": `  shiploop runbook run acme/web restart --option service=worker --follow
  shiploop runbook run acme/web refresh-staging --follow    # a data runbook: production -> staging
  shiploop runbook history acme/web restart
  shiploop runbook show <run id> --json`,
	"errors": `  shiploop errors project create web          # prints a DSN for the Sentry SDKs
  shiploop errors ls --project web --status unresolved
  shiploop errors resolve <issue id> --next-release`,
	"dashboards": `  shiploop dashboards rebuild                  # replay the event stream into the read models`,
}
