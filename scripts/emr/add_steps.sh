#!/usr/bin/env bash
# Add the mlcore nightly chain to a running EMR cluster: one spark-submit step per job.
#
#   scripts/emr/add_steps.sh CLUSTER_ID RUN_DATE [--code-uri S3_URI] [--upload] [--dry-run]
#
#   CLUSTER_ID        the EMR cluster, e.g. j-2AXXXXXXGAPLF
#   RUN_DATE          YYYY-MM-DD, the "as of" date passed to every job (--run-date)
#   --code-uri URI    S3 folder holding dist/mlcore.zip, dist/conf.zip and jobs/*.py
#                     (default: $MLCORE_CODE_URI; a placeholder is used with --dry-run)
#   --upload          build dist/mlcore.zip and dist/conf.zip with ./spark-submit.sh and copy
#                     them and jobs/*.py to --code-uri first
#   --dry-run         print the upload commands, the steps JSON and the aws command; run nothing
#
# The steps come from scripts/emr/steps.json (${RUN_DATE} and ${CODE_URI} substituted). Each is
# a command-runner.jar step running the same spark-submit command as
#   ./spark-submit.sh --master yarn --deploy-mode cluster --conf spark.scheduler.mode=FAIR \
#       --conf spark.sql.extensions=... --conf spark.sql.catalog.spark_catalog=... <job> \
#       --env emr --run-date RUN_DATE
# with the package, conf/ and the job scripts read from S3 instead of this checkout. Steps run in
# order; a failed step cancels the rest (ActionOnFailure CANCEL_AND_WAIT). The aws CLI is taken
# from $AWS_CLI (default: aws on PATH), with its usual credentials, region and profile settings.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TEMPLATE="${MLCORE_EMR_STEPS:-$HERE/steps.json}"
PLACEHOLDER_CODE_URI="s3://my-mlcore-bucket/code/mlcore"
AWS="${AWS_CLI:-aws}"

usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "add_steps.sh: $1" >&2; exit "${2:-2}"; }

DRY_RUN=0
UPLOAD=0
CODE_URI="${MLCORE_CODE_URI:-}"
POSITIONAL=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY_RUN=1; shift ;;
    --upload) UPLOAD=1; shift ;;
    --code-uri) [[ $# -ge 2 ]] || die "--code-uri needs a value"; CODE_URI="$2"; shift 2 ;;
    --code-uri=*) CODE_URI="${1#*=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) POSITIONAL+=("$1"); shift ;;
  esac
done
[[ ${#POSITIONAL[@]} -eq 2 ]] || { usage >&2; exit 2; }
CLUSTER_ID="${POSITIONAL[0]}"
RUN_DATE="${POSITIONAL[1]}"

[[ "$CLUSTER_ID" =~ ^j-[A-Za-z0-9]+$ ]] || die "invalid cluster id '$CLUSTER_ID' (expected j-XXXXXXXX)"
[[ "$RUN_DATE" =~ ^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$ ]] \
  || die "invalid run date '$RUN_DATE' (expected YYYY-MM-DD)"
if [[ -z "$CODE_URI" ]]; then
  [[ "$DRY_RUN" == 1 ]] || die "no code location: pass --code-uri s3://bucket/prefix or set MLCORE_CODE_URI"
  CODE_URI="$PLACEHOLDER_CODE_URI"
fi
CODE_URI="${CODE_URI%/}"
# Only plain S3 keys: the value is substituted into JSON and a sed expression.
[[ "$CODE_URI" =~ ^s3://[A-Za-z0-9._-]+(/[A-Za-z0-9._=+-]+)*$ ]] \
  || die "invalid code uri '$CODE_URI' (expected s3://bucket/prefix, letters, digits, . _ - = +)"
[[ -f "$TEMPLATE" ]] || die "steps template not found: $TEMPLATE"

STEPS_FILE="$(mktemp "${TMPDIR:-/tmp}/mlcore-emr-steps.XXXXXX")"
trap 'rm -f "$STEPS_FILE"' EXIT
sed -e "s|\${RUN_DATE}|$RUN_DATE|g" -e "s|\${CODE_URI}|$CODE_URI|g" "$TEMPLATE" >"$STEPS_FILE"
if grep -q '\${' "$STEPS_FILE"; then
  die "unsubstituted placeholder in $TEMPLATE: $(grep -o '\${[A-Za-z_]*}' "$STEPS_FILE" | sort -u | tr '\n' ' ')"
fi

ADD_CMD=("$AWS" emr add-steps --cluster-id "$CLUSTER_ID" --steps "file://$STEPS_FILE")

# Each upload command is one line; run_or_print runs it, or prints it (shell-quoted) in a dry run.
run_or_print() {
  if [[ "$DRY_RUN" == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}
upload() {
  run_or_print "$AWS" s3 cp "$ROOT/dist/mlcore.zip" "$CODE_URI/dist/mlcore.zip"
  run_or_print "$AWS" s3 cp "$ROOT/dist/conf.zip" "$CODE_URI/dist/conf.zip"
  run_or_print "$AWS" s3 cp --recursive "$ROOT/jobs" "$CODE_URI/jobs" --exclude "*" --include "*.py"
}

if [[ "$DRY_RUN" == 1 ]]; then
  if [[ "$UPLOAD" == 1 ]]; then
    echo "# upload (after building dist/ with ./spark-submit.sh --print-command ingest_sales):"
    upload
  fi
  echo "# steps ($(grep -c '"Jar": "command-runner.jar"' "$STEPS_FILE") jobs, run date $RUN_DATE, code $CODE_URI):"
  cat "$STEPS_FILE"
  echo "# command:"
  printf '%q ' "${ADD_CMD[@]}"; echo
  exit 0
fi

command -v "$AWS" >/dev/null 2>&1 \
  || die "aws CLI not found ('$AWS'): install AWS CLI v2 (https://aws.amazon.com/cli/) or set AWS_CLI; --dry-run needs no CLI" 127

if [[ "$UPLOAD" == 1 ]]; then
  # spark-submit.sh builds dist/mlcore.zip and dist/conf.zip fresh before printing its command.
  "$ROOT/spark-submit.sh" --print-command ingest_sales >/dev/null
  upload
fi
"${ADD_CMD[@]}"
