-- Trials and enrolment per phase; `trials` is the input alias of pipeline_config.yaml.
SELECT phase,
       count(*)      AS trials,
       sum(enrolled) AS enrolled,
       min(site)     AS first_site
FROM trials
GROUP BY phase
