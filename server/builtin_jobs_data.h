// The text of the job files built into ps_server (generated from
// server/jobs/ by server/embed_jobs.sh); read them through BuiltinJob.
#ifndef FULCRUM_SERVER_BUILTIN_JOBS_DATA_H_
#define FULCRUM_SERVER_BUILTIN_JOBS_DATA_H_

namespace fulcrum {

struct BuiltinJobText {
  const char* name;  // the file's name without .textproto; null ends the table
  const char* text;
};
extern const BuiltinJobText kBuiltinJobTexts[];

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_BUILTIN_JOBS_DATA_H_
