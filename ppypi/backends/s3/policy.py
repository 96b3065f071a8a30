"""
The least IAM policy an s3 repository needs on its bucket and prefix: what
README shows and what the tests grant the server's user (moto enforces it).
"""

import json


def least_policy(bucket, prefix="", write=True):
    """
    The IAM policy document (a dict) that lets a server read (and, with
    C{write}, write) the repository under C{prefix} of C{bucket}, and
    nothing else.
    """
    objects = f"arn:aws:s3:::{bucket}/{prefix}*"
    object_actions = ["s3:GetObject"]
    if write:
        object_actions += ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    listing = {"Sid": "PpypiList", "Effect": "Allow", "Action": ["s3:ListBucket"],
               "Resource": f"arn:aws:s3:::{bucket}"}
    if prefix:
        listing["Condition"] = {"StringLike": {"s3:prefix": [f"{prefix}*"]}}
    statements = [
        {"Sid": "PpypiObjects", "Effect": "Allow", "Action": object_actions,
         "Resource": objects},
        listing,
    ]
    if write:
        # Uploads interrupted by a crash are found and aborted by a sync. This
        # listing takes no s3:prefix condition key, so it has no condition.
        statements.append({"Sid": "PpypiUploads", "Effect": "Allow",
                           "Action": ["s3:ListBucketMultipartUploads"],
                           "Resource": f"arn:aws:s3:::{bucket}"})
    return {"Version": "2012-10-17", "Statement": statements}


def policy_json(bucket, prefix="", write=True):
    return json.dumps(least_policy(bucket, prefix, write), indent=2)
